package netspec

import (
	"errors"
	"fmt"
	"net"
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

// ParseAddressPair parses one allowed address pair of a port, the same on
// both sides: an address (taken as a /32 or /128) or a CIDR without host
// bits, and a unicast MAC or "" (the port's own).
func ParseAddressPair(ip, mac string) (netip.Prefix, net.HardwareAddr, error) {
	var p netip.Prefix
	if a, err := ParseAddr(ip); err == nil {
		p = netip.PrefixFrom(a, a.BitLen())
	} else if p, err = ParsePrefix(ip); err != nil {
		return p, nil, fmt.Errorf("ip_address: %q is not an address or a CIDR", ip)
	} else if p != p.Masked() {
		return p, nil, fmt.Errorf("ip_address: %s has host bits set (did you mean %s?)", ip, p.Masked())
	}
	if mac == "" {
		return p, nil, nil
	}
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 || hw[0]&1 == 1 {
		return p, nil, fmt.Errorf("mac_address: %q is not a unicast Ethernet address", mac)
	}
	return p, hw, nil
}
