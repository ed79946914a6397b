package netspec

import (
	"errors"
	"fmt"
	"net/netip"
)

func (g *FirewallGroup) validate(ifIDs map[string]bool) error {
	var errs []error
	if !idRE.MatchString(g.ID) {
		errs = append(errs, fmt.Errorf("group %q: invalid id", g.ID))
	}
	for _, p := range g.Ports {
		if !ifIDs[p] {
			errs = append(errs, fmt.Errorf("group %q port %q: not an interface of the router", g.ID, p))
		}
	}
	for _, pol := range []struct {
		dir string
		p   *FirewallPolicy
	}{{"ingress", g.Ingress}, {"egress", g.Egress}} {
		if pol.p == nil {
			continue
		}
		for i, r := range pol.p.Rules {
			if err := r.Validate(); err != nil {
				errs = append(errs, fmt.Errorf("group %q %s policy %q rule %d (%q): %w", g.ID, pol.dir, pol.p.ID, i, r.ID, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Validate checks one firewall rule.
func (r FirewallRule) Validate() error {
	var errs []error
	switch r.Action {
	case ActionAllow, ActionDeny, ActionReject:
	default:
		errs = append(errs, fmt.Errorf("action %q: want allow, deny or reject", r.Action))
	}
	errs = append(errs, validProto(r.Protocol, r.SrcPorts, r.DstPorts))
	if _, err := ParseCIDR(r.Source); err != nil {
		errs = append(errs, fmt.Errorf("source: %w", err))
	}
	if _, err := ParseCIDR(r.Dest); err != nil {
		errs = append(errs, fmt.Errorf("destination: %w", err))
	}
	return errors.Join(errs...)
}

// ParseCIDR parses an IPv4 CIDR whose host bits are zero; "" is the zero
// Prefix (any address).
func ParseCIDR(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return p, fmt.Errorf("invalid cidr %q: %w", s, err)
	case !p.Addr().Is4():
		return p, fmt.Errorf("invalid cidr %q: not IPv4", s)
	case p != p.Masked():
		return p, fmt.Errorf("invalid cidr %q: host bits set (did you mean %s?)", s, p.Masked())
	}
	return p, nil
}

// ParseRemoteCIDR parses a security group rule's remote CIDR: IPv4 or
// IPv6, host bits zero, no zone, no IPv4-mapped IPv6; "" is the zero
// Prefix (any address).
func ParseRemoteCIDR(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return p, fmt.Errorf("invalid cidr %q: %w", s, err)
	case p.Addr().Is4In6():
		return p, fmt.Errorf("invalid cidr %q: an IPv4-mapped IPv6 prefix (write it as IPv4)", s)
	case p != p.Masked():
		return p, fmt.Errorf("invalid cidr %q: host bits set (did you mean %s?)", s, p.Masked())
	}
	return p, nil
}

// CheckEthertype checks a rule's ethertype, and that it matches the
// family of its remote CIDR: a rule for IPv4 from an IPv6 prefix could
// never match, and is refused rather than kept as a silent no-op.
func (r SecurityGroupRule) CheckEthertype() error {
	switch r.Ethertype {
	case "", EtherIPv4, EtherIPv6:
	default:
		return fmt.Errorf("ethertype %q: want %s, %s or empty", r.Ethertype, EtherIPv4, EtherIPv6)
	}
	p, err := ParseRemoteCIDR(r.RemoteCIDR)
	if err != nil || !p.IsValid() || r.Ethertype == "" {
		return nil
	}
	if fam := map[bool]string{true: EtherIPv4, false: EtherIPv6}[p.Addr().Is4()]; fam != r.Ethertype {
		return fmt.Errorf("ethertype %q does not match remote cidr %q, an %s prefix", r.Ethertype, r.RemoteCIDR, fam)
	}
	return nil
}

func validProto(proto string, ranges ...*PortRange) error {
	switch proto {
	case ProtoAny, ProtoTCP, ProtoUDP, ProtoICMP:
	default:
		return fmt.Errorf("protocol %q: want tcp, udp, icmp or empty", proto)
	}
	var errs []error
	for _, pr := range ranges {
		if pr == nil {
			continue
		}
		if proto != ProtoTCP && proto != ProtoUDP {
			errs = append(errs, fmt.Errorf("port range %d-%d: needs protocol tcp or udp, not %q", pr.From, pr.To, proto))
		}
		if err := pr.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Validate checks 1 <= From <= To <= 65535.
func (pr PortRange) Validate() error {
	if pr.From < 1 || pr.To > 65535 || pr.From > pr.To {
		return fmt.Errorf("port range %d-%d: want 1 <= from <= to <= 65535", pr.From, pr.To)
	}
	return nil
}

// ValidateSecurityGroups checks every group and that remote groups exist.
func ValidateSecurityGroups(groups []SecurityGroup) error {
	var errs []error
	ids := map[string]bool{}
	for _, g := range groups {
		if !idRE.MatchString(g.ID) || ids[g.ID] {
			errs = append(errs, fmt.Errorf("security group %q: invalid or duplicate id", g.ID))
		}
		ids[g.ID] = true
	}
	for _, g := range groups {
		for i, r := range g.Rules {
			if err := r.validate(ids); err != nil {
				errs = append(errs, fmt.Errorf("security group %q rule %d: %w", g.ID, i, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (r SecurityGroupRule) validate(groups map[string]bool) error {
	var errs []error
	if r.Direction != Ingress && r.Direction != Egress {
		errs = append(errs, fmt.Errorf("direction %q: want ingress or egress", r.Direction))
	}
	errs = append(errs, validProto(r.Protocol, r.Ports))
	if _, err := ParseRemoteCIDR(r.RemoteCIDR); err != nil {
		errs = append(errs, fmt.Errorf("remote cidr: %w", err))
	}
	errs = append(errs, r.CheckEthertype())
	if r.RemoteGroup != "" && r.RemoteCIDR != "" {
		errs = append(errs, errors.New("remote cidr and remote group are both set"))
	}
	if r.RemoteGroup != "" && !groups[r.RemoteGroup] {
		errs = append(errs, fmt.Errorf("remote group %q: no such group", r.RemoteGroup))
	}
	return errors.Join(errs...)
}
