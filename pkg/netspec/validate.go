package netspec

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
)

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// maxIfName is the longest Linux interface name (IFNAMSIZ less the NUL).
const maxIfName = MaxLinkName

// ValidateRouters validates each router and what must be unique across
// routers: a floating IP is associated at most once.
func ValidateRouters(routers []Router) error {
	var errs []error
	ids := map[string]bool{}
	fips := map[netip.Addr]string{}
	for _, r := range routers {
		if err := r.Validate(); err != nil {
			errs = append(errs, err)
		}
		if ids[r.ID] {
			errs = append(errs, fmt.Errorf("router %q: listed twice", r.ID))
		}
		ids[r.ID] = true
		for _, f := range r.FloatingIPs {
			if other, ok := fips[f.IP]; ok && other != r.ID {
				errs = append(errs, fmt.Errorf("router %q floating ip %s: already taken by router %q", r.ID, f.IP, other))
			}
			fips[f.IP] = r.ID
		}
	}
	return errors.Join(errs...)
}

// Validate checks one router; every error names the router and the field.
func (r Router) Validate() error {
	if !idRE.MatchString(r.ID) {
		return fmt.Errorf("router %q: invalid id", r.ID)
	}
	var errs []error
	add := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("router %q "+format, append([]any{r.ID}, a...)...))
	}
	if g := r.Gateway; g != nil {
		if err := validHostPrefix(g.Addr); err != nil {
			add("gateway addr: %w", err)
		}
		if g.Bridge == "" || len(g.Bridge) > maxIfName {
			add("gateway bridge %q: must be 1..%d characters", g.Bridge, maxIfName)
		}
		if g.NextHop.IsValid() && !g.Addr.Contains(g.NextHop) {
			add("gateway next hop %s: not in %s", g.NextHop, g.Addr.Masked())
		}
	} else if r.SNAT || len(r.FloatingIPs) > 0 {
		add("snat and floating ips: need a gateway")
	}
	ifIDs := map[string]bool{}
	for i, in := range r.Interfaces {
		if !idRE.MatchString(in.ID) || ifIDs[in.ID] {
			add("interface %q: invalid or duplicate id", in.ID)
		}
		ifIDs[in.ID] = true
		if in.NetworkID == "" {
			add("interface %q: network id is empty", in.ID)
		}
		if err := validHostPrefix(in.Addr); err != nil {
			add("interface %q addr: %w", in.ID, err)
			continue
		}
		for _, other := range r.Interfaces[:i] {
			if other.Addr.IsValid() && other.Addr.Masked().Overlaps(in.Addr.Masked()) {
				add("interface %q: cidr %s overlaps interface %q (%s)", in.ID, in.Addr.Masked(), other.ID, other.Addr.Masked())
			}
		}
		if r.Gateway != nil && r.Gateway.Addr.IsValid() && r.Gateway.Addr.Masked().Overlaps(in.Addr.Masked()) {
			add("interface %q: cidr %s overlaps the gateway's %s", in.ID, in.Addr.Masked(), r.Gateway.Addr.Masked())
		}
	}
	for _, rt := range r.Routes {
		if !rt.Dest.IsValid() || !rt.Dest.Addr().Is4() || rt.Dest != rt.Dest.Masked() {
			add("route %s: invalid destination cidr", rt.Dest)
		}
		if !rt.NextHop.Is4() {
			add("route %s: invalid next hop %s", rt.Dest, rt.NextHop)
		}
	}
	errs = append(errs, r.validateFloatingIPs()...)
	if r.Firewall != nil {
		if err := r.Firewall.validate(ifIDs); err != nil {
			add("firewall: %w", err)
		}
	}
	return errors.Join(errs...)
}

func (r Router) validateFloatingIPs() []error {
	var errs []error
	seen, fixed := map[netip.Addr]bool{}, map[netip.Addr]netip.Addr{}
	for _, f := range r.FloatingIPs {
		switch {
		case !f.IP.Is4():
			errs = append(errs, fmt.Errorf("router %q floating ip %s: not an IPv4 address", r.ID, f.IP))
			continue
		case seen[f.IP]:
			errs = append(errs, fmt.Errorf("router %q floating ip %s: already taken", r.ID, f.IP))
		case r.Gateway != nil && (!r.Gateway.Addr.Contains(f.IP) || f.IP == r.Gateway.Addr.Addr()):
			errs = append(errs, fmt.Errorf("router %q floating ip %s: not a free address of the external subnet %s", r.ID, f.IP, r.Gateway.Addr.Masked()))
		}
		seen[f.IP] = true
		if other, ok := fixed[f.FixedIP]; ok {
			errs = append(errs, fmt.Errorf("router %q floating ip %s: fixed ip %s already has floating ip %s", r.ID, f.IP, f.FixedIP, other))
		}
		fixed[f.FixedIP] = f.IP
		behind := false
		for _, in := range r.Interfaces {
			behind = behind || (in.Addr.IsValid() && in.Addr.Masked().Contains(f.FixedIP))
		}
		if !behind {
			errs = append(errs, fmt.Errorf("router %q floating ip %s: fixed ip %s is on none of the router's interfaces", r.ID, f.IP, f.FixedIP))
		}
	}
	return errs
}

// validHostPrefix accepts an IPv4 address with its subnet that is neither
// the subnet's network nor its broadcast address.
func validHostPrefix(p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is4() {
		return fmt.Errorf("invalid cidr %s: want an IPv4 address/length", p)
	}
	if p.Bits() < 31 {
		net := p.Masked().Addr()
		if p.Addr() == net || p.Addr() == lastAddr(p) {
			return fmt.Errorf("%s is the network or broadcast address of %s", p.Addr(), p.Masked())
		}
	}
	return nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(a)
}
