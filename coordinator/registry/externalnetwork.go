package registry

import (
	"errors"
	"net/http"
	"net/netip"
	"regexp"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netspec"
)

// MaxPhysnetLen keeps the provider bridge name within IFNAMSIZ.
const MaxPhysnetLen = netspec.MaxPhysnetLen

var physnetRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// ExternalNetworkKind is a flat provider network with one IPv4 subnet:
// where router gateways and floating IPs live. Admin only.
func ExternalNetworkKind() *Kind {
	str := map[string]any{"type": "string"}
	return &Kind{
		Name: "externalnetwork", Plural: "externalnetworks", Scope: Global, Order: 5,
		AdminWrite: true, PublicRead: true,
		NewSpec:      func() any { return &api.ExternalNetworkSpec{} },
		Admit:        admitExternalNetwork,
		BeforeDelete: deleteExternalNetwork,
		Schema: map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"physical_network", "cidr"},
			"properties": map[string]any{
				"physical_network": str, "cidr": str, "gateway": str,
				"allocation_pools": map[string]any{"type": "array", "items": map[string]any{"type": "object"}},
			},
		},
	}
}

func admitExternalNetwork(a *Admission, r *api.Resource, spec any) error {
	s := spec.(*api.ExternalNetworkSpec)
	if !physnetRE.MatchString(s.PhysicalNetwork) || len(s.PhysicalNetwork) > MaxPhysnetLen {
		return api.Fieldf("spec.physical_network", "%q must be 1..%d lower-case letters, digits, '-' or '_'", s.PhysicalNetwork, MaxPhysnetLen)
	}
	if _, err := canonPrefix("spec.cidr", &s.CIDR); err != nil {
		return err
	}
	if a.Prev != nil {
		prev := decode[api.ExternalNetworkSpec](*a.Prev)
		if prev.CIDR != s.CIDR {
			return api.Fieldf("spec.cidr", "cannot change from %s to %s", prev.CIDR, s.CIDR)
		}
	}
	p, err := parseCIDR(s.CIDR)
	if err != nil {
		return err
	}
	if !p.Addr().Is4() {
		return api.Fieldf("spec.cidr", "only IPv4 external networks are supported")
	}
	gwField := s.Gateway
	if gwField == "" {
		gwField = "none"
	}
	gw, err := admitGateway("spec.gateway", &gwField, p)
	if err != nil {
		return err
	}
	s.Gateway = gwField
	if gwField == "none" {
		s.Gateway = ""
	}
	return admitPools("spec.allocation_pools", &s.AllocationPools, p, gw)
}

func deleteExternalNetwork(a *Admission, r api.Resource) error {
	for _, kind := range []string{"router", "floatingip"} {
		all, err := a.Tx.List(kind, "", true)
		if err != nil {
			return err
		}
		for _, x := range all {
			var ext string
			if kind == "router" {
				ext = decode[api.RouterSpec](x).ExternalNetwork
			} else {
				ext = decode[api.FloatingIPSpec](x).ExternalNetwork
			}
			if ext == r.Name {
				return Conflictf("external network %q is still used by %s %s", r.Name, kind, x.Key())
			}
		}
	}
	return nil
}

type externalNet struct {
	spec   api.ExternalNetworkSpec
	prefix netip.Prefix
	gw     netip.Addr
}

func getExternalNetwork(tx *store.Tx, name, field string) (externalNet, error) {
	r, err := tx.Get(api.Key{Kind: "externalnetwork", Name: name})
	if errors.Is(err, store.ErrNotFound) {
		return externalNet{}, api.Fieldf(field, "external network %q does not exist", name)
	}
	if err != nil {
		return externalNet{}, err
	}
	s := decode[api.ExternalNetworkSpec](r)
	p, _ := netip.ParsePrefix(s.CIDR)
	gw, _ := netip.ParseAddr(s.Gateway)
	return externalNet{spec: s, prefix: p, gw: gw}, nil
}

// externalUsed maps every address taken on an external network (router
// gateways and floating IPs) to who holds it, except the resource skip.
func externalUsed(tx *store.Tx, network string, skip api.Key) (map[netip.Addr]string, error) {
	used := map[netip.Addr]string{}
	routers, err := tx.List("router", "", true)
	if err != nil {
		return nil, err
	}
	for _, r := range routers {
		s := decode[api.RouterSpec](r)
		if a, err := netip.ParseAddr(s.ExternalIP); err == nil && s.ExternalNetwork == network && r.Key() != skip {
			used[a] = r.Key().String()
		}
	}
	fips, err := tx.List("floatingip", "", true)
	if err != nil {
		return nil, err
	}
	for _, f := range fips {
		s := decode[api.FloatingIPSpec](f)
		if a, err := netip.ParseAddr(s.IP); err == nil && s.ExternalNetwork == network && f.Key() != skip {
			used[a] = f.Key().String()
		}
	}
	return used, nil
}

// allocateExternal gives or checks an address on an external network.
//
// With anyAddr (an admin, or an update keeping its address) any usable
// address of the network may be taken; else only one of its allocation
// pools, so the addresses outside (upstream routers, the operator's own)
// are never a tenant's.
func allocateExternal(tx *store.Tx, ext externalNet, network, field string, v *string, self api.Key, anyAddr bool) error {
	used, err := externalUsed(tx, network, self)
	if err != nil {
		return err
	}
	if *v == "" {
		ip, err := allocate(ext.spec.AllocationPools, used, ext.gw)
		if err != nil {
			return Conflictf("external network %q: %v", network, err)
		}
		*v = ip.String()
		return nil
	}
	ip, err := canonAddr(field, v)
	switch {
	case err != nil:
		return err
	case !usable(ext.prefix, ip):
		return api.Fieldf(field, "%q is not a usable address of external network %q (%s)", *v, network, ext.prefix)
	case ip == ext.gw:
		return api.Fieldf(field, "%s is the external network's gateway", ip)
	case !anyAddr && !inPools(ext.spec.AllocationPools, ip):
		return &api.Error{Code: http.StatusForbidden, Field: field, Message: ip.String() + " is outside external network " + network + "'s allocation pools; only an admin may take it"}
	}
	if other, dup := used[ip]; dup {
		return &api.Error{Code: 409, Field: field, Message: ip.String() + " is already taken by " + other}
	}
	*v = ip.String()
	return nil
}
