package nftsync

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Field is one field of a concatenated set key.
type Field int

// Fields a concatenation can hold.
const (
	L4Proto    Field = iota // meta l4proto
	SAddr                   // ip saddr
	DAddr                   // ip daddr
	SPort                   // th sport
	DPort                   // th dport
	IIFName                 // iifname
	OIFName                 // oifname
	EtherSAddr              // ether saddr
	SAddr6                  // ip6 saddr
	DAddr6                  // ip6 daddr
)

var fieldInfo = [...]struct {
	text string
	len  int
	typ  nftables.SetDatatype
}{
	L4Proto:    {"meta l4proto", 1, nftables.TypeInetProto},
	SAddr:      {"ip saddr", 4, nftables.TypeIPAddr},
	DAddr:      {"ip daddr", 4, nftables.TypeIPAddr},
	SPort:      {"th sport", 2, nftables.TypeInetService},
	DPort:      {"th dport", 2, nftables.TypeInetService},
	IIFName:    {"iifname", 16, nftables.TypeIFName},
	OIFName:    {"oifname", 16, nftables.TypeIFName},
	EtherSAddr: {"ether saddr", 6, nftables.TypeEtherAddr},
	SAddr6:     {"ip6 saddr", 16, nftables.TypeIP6Addr},
	DAddr6:     {"ip6 daddr", 16, nftables.TypeIP6Addr},
}

// width is the field's size in a key: its length padded to 4 bytes.
func (f Field) width() int { return (fieldInfo[f].len + 3) &^ 3 }

func (f Field) datatype() nftables.SetDatatype { return fieldInfo[f].typ }

// load puts the field into 32-bit register r.
func (f Field) load(r uint32) expr.Any {
	switch f {
	case L4Proto:
		return &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: r}
	case SAddr:
		return &expr.Payload{DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
	case DAddr:
		return &expr.Payload{DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
	case SPort:
		return &expr.Payload{DestRegister: r, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2}
	case IIFName:
		return &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: r}
	case OIFName:
		return &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: r}
	case EtherSAddr:
		return &expr.Payload{DestRegister: r, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6}
	case SAddr6:
		return &expr.Payload{DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16}
	case DAddr6:
		return &expr.Payload{DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16}
	default:
		return &expr.Payload{DestRegister: r, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
	}
}

// Pack encodes one key of a set with fields: vals[i] is the value of
// fields[i] (big endian in the field's width), each field padded to 4
// bytes as the kernel's registers hold them.
func Pack(fields []Field, vals []uint32) []byte {
	b := make([]byte, 0, 4*len(fields))
	for i, f := range fields {
		var w [4]byte
		switch fieldInfo[f].len {
		case 1:
			w[0] = byte(vals[i])
		case 2:
			binary.BigEndian.PutUint16(w[:], uint16(vals[i]))
		default:
			binary.BigEndian.PutUint32(w[:], vals[i])
		}
		b = append(b, w[:]...)
	}
	return b
}

// PackBytes encodes one key from raw field values (an interface name, a
// MAC, an address), each padded with zeros to its field's width.
func PackBytes(fields []Field, vals [][]byte) []byte {
	var b []byte
	for i, f := range fields {
		w := make([]byte, f.width())
		copy(w, vals[i])
		b = append(b, w...)
	}
	return b
}

// reg32 is NFT_REG32_00, the first 32-bit register; a concatenation loads
// its fields into consecutive ones.
const reg32 = 8

func (b *B) concat(fields []Field, masks []int) string {
	names := make([]string, len(fields))
	r := uint32(reg32)
	for i, f := range fields {
		names[i] = fieldInfo[f].text
		b.exprs = append(b.exprs, f.load(r))
		if i < len(masks) && masks[i] > 0 && masks[i] < 32 && fieldInfo[f].len == 4 {
			m := net.CIDRMask(masks[i], 32)
			names[i] += " & " + net.IP(m).String()
			b.exprs = append(b.exprs, &expr.Bitwise{SourceRegister: r, DestRegister: r, Len: 4, Mask: m, Xor: make([]byte, 4)})
		}
		r += uint32(f.width() / 4)
	}
	return strings.Join(names, " . ")
}

// VMap ends the rule with a lookup of the concatenated fields in verdict
// map set: the verdict of the matching element, or on to the next rule
// when none matches.
func (b *B) VMap(set string, fields ...Field) Rule { return b.MaskedVMap(set, fields, nil) }

// MaskedVMap is VMap with address fields masked to masks[i] bits first
// (0 or 32: unmasked), for a map of exact keys.
func (b *B) MaskedVMap(set string, fields []Field, masks []int) Rule {
	text := b.concat(fields, masks)
	return b.end(text+" vmap @"+set, &expr.Lookup{SourceRegister: reg32, SetName: set, IsDestRegSet: true, DestRegister: 0})
}

// In matches when the concatenated fields are in set.
func (b *B) In(set string, fields ...Field) *B {
	text := b.concat(fields, nil)
	return b.add(text+" @"+set, &expr.Lookup{SourceRegister: reg32, SetName: set})
}

// Text renders element r of a set with these fields the way nft lists
// it: each field's value or range (addresses as prefixes where they are
// one), joined by " . ", then the verdict in a verdict map.
func (r Range) Text(fields []Field, vmap bool) string {
	parts := make([]string, len(fields))
	off := 0
	for i, f := range fields {
		w := f.width()
		lo, hi := r.From[off:off+w], r.From[off:off+w]
		if len(r.To) > 0 {
			hi = r.To[off : off+w]
		}
		off += w
		parts[i] = fieldText(f, lo, hi)
	}
	s := strings.Join(parts, " . ")
	if vmap {
		s += " : " + verdictText(r.Verdict)
	}
	return s
}

func fieldText(f Field, lo, hi []byte) string {
	if f == SAddr6 || f == DAddr6 {
		a, b := netip.AddrFrom16([16]byte(lo)), netip.AddrFrom16([16]byte(hi))
		for bits := 0; bits <= 128; bits++ {
			p := netip.PrefixFrom(a, bits)
			if p.Masked().Addr() == a && lastOf(p) == b {
				return p.String()
			}
		}
		return a.String() + "-" + b.String()
	}
	switch fieldInfo[f].len {
	case 16:
		return strconv.Quote(strings.TrimRight(string(lo), "\x00"))
	case 6:
		return net.HardwareAddr(lo[:6]).String()
	case 1:
		return numRange(uint32(lo[0]), uint32(hi[0]))
	case 2:
		return numRange(uint32(binary.BigEndian.Uint16(lo)), uint32(binary.BigEndian.Uint16(hi)))
	}
	a, b := binary.BigEndian.Uint32(lo), binary.BigEndian.Uint32(hi)
	size := b - a + 1
	if size&(size-1) == 0 && a&(size-1) == 0 { // a prefix (size 0: all of it)
		bits := 32
		for s := size; s > 1; s >>= 1 {
			bits--
		}
		if size == 0 {
			bits = 0
		}
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(lo)), bits).String()
	}
	return netip.AddrFrom4([4]byte(lo)).String() + "-" + netip.AddrFrom4([4]byte(hi)).String()
}

func numRange(a, b uint32) string {
	if a == b {
		return strconv.Itoa(int(a))
	}
	return strconv.Itoa(int(a)) + "-" + strconv.Itoa(int(b))
}

func verdictText(v expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	}
	return fmt.Sprintf("verdict %d", v.Kind)
}

// Verdict ends the rule with verdict v.
func (b *B) Verdict(v expr.Verdict) Rule {
	return b.end(verdictText(v), &expr.Verdict{Kind: v.Kind, Chain: v.Chain})
}

// lastOf is the last address of p.
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(b)
}
