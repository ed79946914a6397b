package netspec

import (
	"errors"
	"fmt"
	"net/netip"
)

// ParseAddr parses an address the way both sides accept one: IPv4 or
// IPv6, never with a zone (a zone is a host's interface name, meaningless
// elsewhere, and would carry any characters into dnsmasq's files), an
// IPv4-mapped IPv6 address taken as the IPv4 one. The result's String is
// the canonical form the coordinator stores.
func ParseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return a, fmt.Errorf("%q is not an IP address", s)
	case a.Zone() != "":
		return netip.Addr{}, errors.New("an address with a zone (%...) is not allowed")
	}
	return a.Unmap(), nil
}

// ParsePrefix parses a prefix as ParseAddr parses an address (prefixes
// never carry zones).
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("%q is not a CIDR", s)
	}
	if p.Addr().Is4In6() {
		bits := p.Bits() - 96
		if bits < 0 {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR", s)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), bits)
	}
	return p, nil
}
