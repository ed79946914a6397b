package nftsync

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Builders for IPv6, ARP and layer-2 matches (port security in the
// bridge family, and IPv6 through the security groups in inet).

// Ethernet types.
const (
	EtherIPv4 = 0x0800
	EtherARP  = 0x0806
	EtherRARP = 0x8035
	EtherIPv6 = 0x86dd
)

var etherNames = map[uint16]string{EtherIPv4: "ip", EtherARP: "arp", EtherIPv6: "ip6"}

// EtherType matches the frame's ethernet type (bridge family).
func (b *B) EtherType(t uint16) *B {
	name, ok := etherNames[t]
	if !ok {
		name = fmt.Sprintf("0x%04x", t)
	}
	return b.add("ether type "+name, &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		cmpEq(binary.BigEndian.AppendUint16(nil, t)))
}

// IPv6 matches IPv6 packets; inet tables need it before an ip6 match.
func (b *B) IPv6() *B {
	return b.add("meta nfproto ipv6", &expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg}, cmpEq([]byte{unix.NFPROTO_IPV6}))
}

// L4Proto matches the layer-4 protocol by number.
func (b *B) L4Proto(n byte) *B {
	return b.add(fmt.Sprintf("meta l4proto %d", n), &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}, cmpEq([]byte{n}))
}

// ICMPv6Type matches an ICMPv6 message of type t.
func (b *B) ICMPv6Type(t byte) *B {
	return b.L4Proto(unix.IPPROTO_ICMPV6).add(fmt.Sprintf("icmpv6 type %d", t),
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1}, cmpEq([]byte{t}))
}

// ICMPv6 message types.
const (
	ICMPv6RouterSolicit   = 133
	ICMPv6RouterAdvert    = 134
	ICMPv6NeighborSolicit = 135
	ICMPv6NeighborAdvert  = 136
	ICMPv6Redirect        = 137
)

func (b *B) addr6(dir string, off uint32, p netip.Prefix) *B {
	if !p.IsValid() || p.Bits() == 0 {
		return b
	}
	ld := &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 16}
	a := p.Masked().Addr().As16()
	if p.Bits() == 128 {
		return b.add(fmt.Sprintf("ip6 %s %s", dir, p.Addr()), ld, cmpEq(a[:]))
	}
	mask := net.CIDRMask(p.Bits(), 128)
	return b.add(fmt.Sprintf("ip6 %s %s", dir, p.Masked()), ld,
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 16, Mask: mask, Xor: make([]byte, 16)}, cmpEq(a[:]))
}

// Src6 matches the IPv6 source address against p; /0 matches all.
func (b *B) Src6(p netip.Prefix) *B { return b.addr6("saddr", 8, p) }

// Dst6 matches the IPv6 destination address against p.
func (b *B) Dst6(p netip.Prefix) *B { return b.addr6("daddr", 24, p) }

// ARPSender matches an ARP packet's sender hardware address and, unless p
// is invalid, its sender IPv4 address in p (bridge family, after
// EtherType(EtherARP)).
func (b *B) ARPSender(mac net.HardwareAddr, p netip.Prefix) *B {
	b = b.add("arp saddr ether "+mac.String(),
		&expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 6}, cmpEq(mac))
	if !p.IsValid() {
		return b
	}
	ld := &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 14, Len: 4}
	a := p.Masked().Addr().As4()
	if p.Bits() == 32 {
		return b.add("arp saddr ip "+p.Addr().String(), ld, cmpEq(a[:]))
	}
	return b.add("arp saddr ip "+p.Masked().String(), ld,
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 4, Mask: net.CIDRMask(p.Bits(), 32), Xor: make([]byte, 4)}, cmpEq(a[:]))
}

// NDTarget matches the target address of a neighbour solicitation or
// advertisement against p (after ICMPv6Type).
func (b *B) NDTarget(p netip.Prefix) *B {
	ld := &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 8, Len: 16}
	a := p.Masked().Addr().As16()
	if p.Bits() == 128 {
		return b.add("icmpv6 nd target "+p.Addr().String(), ld, cmpEq(a[:]))
	}
	return b.add("icmpv6 nd target "+p.Masked().String(), ld,
		&expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: 16, Mask: net.CIDRMask(p.Bits(), 128), Xor: make([]byte, 16)}, cmpEq(a[:]))
}
