package registry

import (
	"net/netip"

	"github.com/strata-infra/strata/pkg/api"
)

// FloatingIPKind is an external address, optionally associated with a
// project port: DNAT in, SNAT out, on the router between them.
func FloatingIPKind() *Kind {
	str := map[string]any{"type": "string"}
	return &Kind{
		Name: "floatingip", Plural: "floatingips", Scope: Project, Order: 50,
		NewSpec:  func() any { return &api.FloatingIPSpec{} },
		Admit:    admitFloatingIP,
		Assigned: []string{"ip"},
		Schema: map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"external_network"},
			"properties": map[string]any{"external_network": str, "ip": str, "port": str, "router": str},
		},
	}
}

func admitFloatingIP(a *Admission, r *api.Resource, spec any) error {
	s := spec.(*api.FloatingIPSpec)
	var prev api.FloatingIPSpec
	if a.Prev != nil {
		prev = decode[api.FloatingIPSpec](*a.Prev)
		if prev.ExternalNetwork != s.ExternalNetwork {
			return api.Fieldf("spec.external_network", "cannot change from %q to %q", prev.ExternalNetwork, s.ExternalNetwork)
		}
		if s.IP == "" {
			s.IP = prev.IP
		}
	}
	ext, err := getExternalNetwork(a.Tx, s.ExternalNetwork, "spec.external_network")
	if err != nil {
		return err
	}
	if err := allocateExternal(a.Tx, ext, s.ExternalNetwork, "spec.ip", &s.IP, r.Key(), a.Admin || (s.IP != "" && s.IP == prev.IP)); err != nil {
		return err
	}
	s.Router = ""
	if s.Port == "" {
		return nil
	}
	return associate(a, r, s)
}

// associate finds the router that carries the port's traffic to the
// floating IP's external network, and refuses a port that has one already.
func associate(a *Admission, r *api.Resource, s *api.FloatingIPSpec) error {
	port, err := a.Tx.Get(api.Key{Kind: "port", Project: r.Project, Name: s.Port})
	if err != nil {
		return api.Fieldf("spec.port", "port %q does not exist in project %q", s.Port, r.Project)
	}
	ps := decode[api.PortSpec](port)
	if len(ps.FixedIPs) == 0 {
		return api.Fieldf("spec.port", "port %q has no fixed IP", s.Port)
	}
	if fixed, err := netip.ParseAddr(ps.FixedIPs[0].IP); err != nil || !fixed.Is4() {
		return api.Fieldf("spec.port", "port %q has no IPv4 address", s.Port)
	}
	fips, err := a.Tx.List("floatingip", r.Project, false)
	if err != nil {
		return err
	}
	for _, f := range fips {
		if f.Name != r.Name && decode[api.FloatingIPSpec](f).Port == s.Port {
			return Conflictf("port %q already has floating ip %q", s.Port, f.Name)
		}
	}
	routers, err := a.Tx.List("router", r.Project, false)
	if err != nil {
		return err
	}
	for _, rt := range routers {
		rs := decode[api.RouterSpec](rt)
		if rs.ExternalNetwork != s.ExternalNetwork {
			continue
		}
		for _, in := range rs.Interfaces {
			if in.Subnet == ps.FixedIPs[0].Subnet {
				s.Router = rt.Name
				return nil
			}
		}
	}
	return api.Fieldf("spec.port", "port %q's subnet %q is not attached to a router with a gateway on external network %q",
		s.Port, ps.FixedIPs[0].Subnet, s.ExternalNetwork)
}
