// Package nftsync converges one nft table to a desired content with one
// netlink batch, and holds the pure rule builder both the router and the
// security group drivers use.
//
// A rule is built once as expressions and as an nft-like text; the text is
// what builder tests compare, and a hash of it, stored as the rule's
// comment, is the rule's identity when the table is read back. So an
// unchanged rule is never touched, a changed one is one delete and one
// insert, and a fresh process computes the same identities (restart without
// changes).
package nftsync

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Rule is one built rule: its expressions and their text.
type Rule struct {
	Text  string
	Exprs []expr.Any
}

// B builds one rule: matches are chained, a verdict ends the rule.
type B struct {
	text  []string
	exprs []expr.Any
}

// R starts a rule.
func R() *B { return &B{} }

const reg = 1 // NFT_REG_1; every match loads, compares and is done with it

func (b *B) add(text string, e ...expr.Any) *B {
	b.text = append(b.text, text)
	b.exprs = append(b.exprs, e...)
	return b
}

func cmpEq(data []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: data} }

// IfName is an interface name as nft compares it: NUL-terminated.
func IfName(name string) []byte { return append([]byte(name), 0) }

// IIF matches the input interface name.
func (b *B) IIF(name string) *B {
	return b.add(fmt.Sprintf("iifname %q", name), &expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg}, cmpEq(IfName(name)))
}

// OIF matches the output interface name.
func (b *B) OIF(name string) *B {
	return b.add(fmt.Sprintf("oifname %q", name), &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg}, cmpEq(IfName(name)))
}

// IPv4 matches IPv4 packets; inet tables need it before an ip match.
func (b *B) IPv4() *B {
	return b.add("meta nfproto ipv4", &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg}, cmpEq([]byte{unix.NFPROTO_IPV4}))
}

func (b *B) addr(dir string, off uint32, p netip.Prefix) *B {
	if !p.IsValid() || p.Bits() == 0 {
		return b
	}
	ld := &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4}
	a := p.Masked().Addr().As4()
	if p.Bits() == 32 {
		return b.add(fmt.Sprintf("ip %s %s", dir, p.Addr()), ld, cmpEq(a[:]))
	}
	mask := net.CIDRMask(p.Bits(), 32)
	return b.add(fmt.Sprintf("ip %s %s", dir, p.Masked()), ld,
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4, Mask: mask, Xor: make([]byte, 4)}, cmpEq(a[:]))
}

// Src matches the source address against p; an invalid or /0 p matches all.
func (b *B) Src(p netip.Prefix) *B { return b.addr("saddr", 12, p) }

// Dst matches the destination address against p.
func (b *B) Dst(p netip.Prefix) *B { return b.addr("daddr", 16, p) }

// SrcAddr matches one source address.
func (b *B) SrcAddr(a netip.Addr) *B { return b.Src(netip.PrefixFrom(a, 32)) }

// DstAddr matches one destination address.
func (b *B) DstAddr(a netip.Addr) *B { return b.Dst(netip.PrefixFrom(a, 32)) }

func (b *B) addrSet(dir string, off uint32, set string, invert bool) *B {
	op := ""
	if invert {
		op = "!= "
	}
	return b.add(fmt.Sprintf("ip %s %s@%s", dir, op, set),
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Lookup{SourceRegister: reg, SetName: set, Invert: invert})
}

// SrcIn matches a source address in the named set.
func (b *B) SrcIn(set string) *B { return b.addrSet("saddr", 12, set, false) }

// DstIn matches a destination address in the named set.
func (b *B) DstIn(set string) *B { return b.addrSet("daddr", 16, set, false) }

// EtherSrc matches the source MAC.
func (b *B) EtherSrc(mac net.HardwareAddr) *B {
	return b.add("ether saddr "+mac.String(),
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6}, cmpEq(mac))
}

// Protocols by name.
var protoNum = map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "icmp": unix.IPPROTO_ICMP}

// Proto matches the layer-4 protocol; "" matches all.
func (b *B) Proto(p string) *B {
	if p == "" {
		return b
	}
	return b.add("meta l4proto "+p, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}, cmpEq([]byte{protoNum[p]}))
}

func (b *B) port(dir string, off uint32, from, to int) *B {
	ld := &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2}
	if from == to {
		return b.add(fmt.Sprintf("th %s %d", dir, from), ld, cmpEq(be16(from)))
	}
	return b.add(fmt.Sprintf("th %s %d-%d", dir, from, to), ld,
		&expr.Range{Op: expr.CmpOpEq, Register: reg, FromData: be16(from), ToData: be16(to)})
}

// SPort matches a source port range (after Proto tcp or udp).
func (b *B) SPort(from, to int) *B { return b.port("sport", 0, from, to) }

// DPort matches a destination port range (after Proto tcp or udp).
func (b *B) DPort(from, to int) *B { return b.port("dport", 2, from, to) }

func be16(v int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(v)) }

// Conntrack states.
const (
	CtInvalid     = expr.CtStateBitINVALID
	CtEstablished = expr.CtStateBitESTABLISHED
	CtRelated     = expr.CtStateBitRELATED
	CtNew         = expr.CtStateBitNEW
)

// CtState matches packets in any of the states in mask.
func (b *B) CtState(mask uint32) *B {
	var names []string
	for _, s := range []struct {
		bit  uint32
		name string
	}{{CtInvalid, "invalid"}, {CtEstablished, "established"}, {CtRelated, "related"}, {CtNew, "new"}} {
		if mask&s.bit != 0 {
			names = append(names, s.name)
		}
	}
	return b.add("ct state "+strings.Join(names, ","),
		&expr.Ct{Register: reg, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, mask), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: make([]byte, 4)})
}

// CtOriginal matches packets in the original direction of their connection.
func (b *B) CtOriginal() *B {
	return b.add("ct direction original", &expr.Ct{Register: reg, Key: expr.CtKeyDIRECTION}, cmpEq([]byte{0}))
}

// CtDNAT matches packets of destination-NATed connections.
func (b *B) CtDNAT() *B {
	const ipsDstNAT = 1 << 5
	return b.add("ct status dnat",
		&expr.Ct{Register: reg, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg, Data: make([]byte, 4)})
}

func (b *B) end(text string, e ...expr.Any) Rule {
	b.add(text, e...)
	return Rule{Text: strings.Join(b.text, " "), Exprs: b.exprs}
}

func verdict(k expr.VerdictKind, chain string) *expr.Verdict {
	return &expr.Verdict{Kind: k, Chain: chain}
}

// Accept ends the rule with accept.
func (b *B) Accept() Rule { return b.end("accept", verdict(expr.VerdictAccept, "")) }

// Drop ends the rule with drop.
func (b *B) Drop() Rule { return b.end("drop", verdict(expr.VerdictDrop, "")) }

// Return ends the rule with return.
func (b *B) Return() Rule { return b.end("return", verdict(expr.VerdictReturn, "")) }

// Jump ends the rule with a jump to chain.
func (b *B) Jump(chain string) Rule { return b.end("jump "+chain, verdict(expr.VerdictJump, chain)) }

// Reject ends the rule with a TCP reset when tcp, else ICMP port
// unreachable (ip family tables).
func (b *B) Reject(tcp bool) Rule {
	if tcp {
		return b.end("reject with tcp reset", &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
	}
	return b.end("reject", &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3})
}

// SNATTo ends the rule with source NAT to a.
func (b *B) SNATTo(a netip.Addr) Rule {
	v := a.As4()
	return b.end("snat to "+a.String(), &expr.Immediate{Register: reg, Data: v[:]},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg})
}

// DNATByDaddr ends the rule with destination NAT to the value the map
// holds for the destination address; no entry, no match.
func (b *B) DNATByDaddr(m string) Rule {
	return b.end("dnat to ip daddr map @"+m,
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: reg, DestRegister: reg, IsDestRegSet: true, SetName: m},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg})
}

// SNATBySaddr ends the rule with source NAT to the value the map holds for
// the source address; no entry, no match.
func (b *B) SNATBySaddr(m string) Rule {
	return b.end("snat to ip saddr map @"+m,
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: reg, DestRegister: reg, IsDestRegSet: true, SetName: m},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg})
}

// Mark matches the packet mark.
func (b *B) Mark(m uint32) *B {
	return b.add(fmt.Sprintf("meta mark 0x%x", m), &expr.Meta{Key: expr.MetaKeyMARK, Register: reg},
		cmpEq(binary.NativeEndian.AppendUint32(nil, m)))
}

// Goto ends the rule with a goto to chain: its return goes back to this
// chain's caller.
func (b *B) Goto(chain string) Rule { return b.end("goto "+chain, verdict(expr.VerdictGoto, chain)) }
