package registry

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/netip"
	"sort"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/contract"
)

// RouterKind is a project router: a namespace on one host routing between
// the project's subnets and, through its gateway, the external network,
// with SNAT and floating IPs.
func RouterKind() *Kind {
	str := map[string]any{"type": "string"}
	return &Kind{
		Name: "router", Plural: "routers", Scope: Project, Order: 40,
		NewSpec:      func() any { return &api.RouterSpec{} },
		Admit:        admitRouter,
		Assigned:     []string{"host", "external_ip"},
		BeforeDelete: deleteRouter,
		Schema: map[string]any{
			"type": "object", "additionalProperties": false,
			"properties": map[string]any{
				"external_network": str, "external_ip": str, "host": str,
				"snat":       map[string]any{"type": "boolean"},
				"interfaces": map[string]any{"type": "array", "items": map[string]any{"type": "object", "properties": map[string]any{"subnet": str}}},
				"routes":     map[string]any{"type": "array", "items": map[string]any{"type": "object"}},
			},
		},
	}
}

func admitRouter(a *Admission, r *api.Resource, spec any) error {
	s := spec.(*api.RouterSpec)
	var prev api.RouterSpec
	if a.Prev != nil {
		prev = decode[api.RouterSpec](*a.Prev)
	}
	on := s.SNATEnabled()
	s.SNAT = &on
	if err := admitRouterHost(a, r, s, prev); err != nil {
		return err
	}
	if s.ExternalNetwork != "" {
		ext, err := getExternalNetwork(a.Tx, s.ExternalNetwork, "spec.external_network")
		if err != nil {
			return err
		}
		if s.ExternalIP == "" && prev.ExternalNetwork == s.ExternalNetwork {
			s.ExternalIP = prev.ExternalIP
		}
		if err := allocateExternal(a.Tx, ext, s.ExternalNetwork, "spec.external_ip", &s.ExternalIP, r.Key(), a.Admin || (s.ExternalIP != "" && s.ExternalIP == prev.ExternalIP)); err != nil {
			return err
		}
	} else if s.ExternalIP != "" {
		return api.Fieldf("spec.external_ip", "needs an external_network")
	}
	subnets, err := admitRouterInterfaces(a, r, s)
	if err != nil {
		return err
	}
	if err := admitRouterRoutes(a, s, subnets); err != nil {
		return err
	}
	if err := routerLinksFree(a, *r, *s, nil); err != nil {
		return err
	}
	if err := keepFloatingIPs(a, r, *s); err != nil {
		return err
	}
	return syncRouterPorts(a, r, *s, prev, subnets)
}

func admitRouterHost(a *Admission, r *api.Resource, s *api.RouterSpec, prev api.RouterSpec) error {
	if s.Host != "" && s.Host != prev.Host && !a.Admin {
		return &api.Error{Code: http.StatusForbidden, Field: "spec.host", Message: "only an admin may place a router"}
	}
	if s.Host == "" {
		s.Host = prev.Host
	}
	if a.System && a.Evacuate != "" && s.Host == a.Evacuate {
		s.Host = "" // its host is fenced: placed again, same addresses
	}
	if s.Host != "" {
		if fe := api.ValidateName("spec.host", s.Host); fe != nil {
			return fe
		}
		return nil
	}
	// A gateway needs the external network's physical network bridged
	// on the router's host.
	physnet := ""
	if s.ExternalNetwork != "" {
		if ext, err := getExternalNetwork(a.Tx, s.ExternalNetwork, "spec.external_network"); err == nil {
			physnet = ext.spec.PhysicalNetwork
		}
	}
	// A leg on a gre network needs a host on the ovs L2 driver.
	gre := false
	for _, in := range s.Interfaces {
		if sub, err := a.Tx.Get(api.Key{Kind: "subnet", Project: r.Project, Name: in.Subnet}); err == nil {
			if _, ns, err := getNetwork(a.Tx, r.Project, decode[api.SubnetSpec](sub).Network, ""); err == nil && ns.Type == "gre" {
				gre = true
			}
		}
	}
	var alive []string
	for _, h := range a.Hosts() {
		if h.State == api.StateAlive && !h.Drained && h.Name != a.Evacuate && (physnet == "" || a.Facts.Maps(h.Name, physnet)) &&
			(!gre || a.Facts.CarriesGRE(h.Name)) {
			alive = append(alive, h.Name)
		}
	}
	if len(alive) == 0 && physnet != "" {
		return &api.Error{Code: http.StatusConflict, Field: "spec.external_network",
			Message: fmt.Sprintf("no alive host bridges physical network %q of external network %q; map it in an agent's network.physical_networks", physnet, s.ExternalNetwork)}
	}
	if len(alive) == 0 {
		return Conflictf("no alive host to place router %q on", r.Name)
	}
	sort.Strings(alive)
	h := fnv.New32a()
	h.Write([]byte(r.Project + "/" + r.Name))
	s.Host = alive[int(h.Sum32()%uint32(len(alive)))]
	return nil
}

// admitRouterInterfaces checks each interface's subnet: in the project,
// with a gateway, not attached to another router, not overlapping another
// interface of this router.
func admitRouterInterfaces(a *Admission, r *api.Resource, s *api.RouterSpec) (map[string]subnetInfo, error) {
	out := map[string]subnetInfo{}
	others, err := a.Tx.List("router", r.Project, false)
	if err != nil {
		return nil, err
	}
	for i, in := range s.Interfaces {
		field := fmt.Sprintf("spec.interfaces[%d].subnet", i)
		sub, err := a.Tx.Get(api.Key{Kind: "subnet", Project: r.Project, Name: in.Subnet})
		if err != nil {
			return nil, api.Fieldf(field, "subnet %q does not exist in project %q", in.Subnet, r.Project)
		}
		ss := decode[api.SubnetSpec](sub)
		p, _ := netip.ParsePrefix(ss.CIDR)
		gw, err := netip.ParseAddr(ss.Gateway)
		if err != nil {
			return nil, api.Fieldf(field, "subnet %q has no gateway address for the router to take", in.Subnet)
		}
		if !p.Addr().Is4() {
			return nil, api.Fieldf(field, "subnet %q (%s): routers route IPv4 subnets only", in.Subnet, p)
		}
		if s.ExternalNetwork != "" {
			if ext, err := getExternalNetwork(a.Tx, s.ExternalNetwork, "spec.external_network"); err == nil && ext.prefix.Overlaps(p) {
				return nil, api.Fieldf(field, "subnet %q (%s) overlaps external network %q (%s)", in.Subnet, p, s.ExternalNetwork, ext.prefix)
			}
		}
		if _, dup := out[in.Subnet]; dup {
			return nil, api.Fieldf(field, "subnet %q is listed twice", in.Subnet)
		}
		for name, o := range out {
			if o.prefix.Overlaps(p) {
				return nil, api.Fieldf(field, "subnet %q (%s) overlaps interface subnet %q (%s)", in.Subnet, p, name, o.prefix)
			}
		}
		for _, o := range others {
			if o.Name == r.Name {
				continue
			}
			for _, oin := range decode[api.RouterSpec](o).Interfaces {
				if oin.Subnet == in.Subnet {
					return nil, Conflictf("subnet %q is already attached to router %q", in.Subnet, o.Name)
				}
			}
		}
		out[in.Subnet] = subnetInfo{name: in.Subnet, prefix: p, gw: gw, spec: ss}
	}
	return out, nil
}

func admitRouterRoutes(a *Admission, s *api.RouterSpec, subnets map[string]subnetInfo) error {
	var ext netip.Prefix
	if s.ExternalNetwork != "" {
		e, err := getExternalNetwork(a.Tx, s.ExternalNetwork, "spec.external_network")
		if err != nil {
			return err
		}
		ext = e.prefix
	}
	for i := range s.Routes {
		rt := &s.Routes[i]
		field := fmt.Sprintf("spec.routes[%d]", i)
		if _, err := canonPrefix(field+".destination", &rt.Destination); err != nil {
			return err
		}
		nh, err := canonAddr(field+".nexthop", &rt.NextHop)
		if err != nil {
			return err
		}
		ok := ext.IsValid() && ext.Contains(nh)
		for _, sn := range subnets {
			ok = ok || sn.prefix.Contains(nh)
		}
		if !ok {
			return api.Fieldf(field+".nexthop", "%s is on none of the router's networks", nh)
		}
	}
	return nil
}

// syncRouterPorts keeps one interface port per attached subnet, bound to
// the router's host and holding the subnet's gateway address, so other
// hosts learn the router's MAC like any port's (l2population).
func syncRouterPorts(a *Admission, r *api.Resource, s, prev api.RouterSpec, subnets map[string]subnetInfo) error {
	for _, in := range prev.Interfaces {
		if _, still := subnets[in.Subnet]; !still {
			if _, err := a.Tx.Delete(api.Key{Kind: "port", Project: r.Project, Name: api.RouterPortName(r.Name, in.Subnet)}); err != nil {
				return err
			}
		}
	}
	for name, sn := range subnets {
		key := api.Key{Kind: "port", Project: r.Project, Name: api.RouterPortName(r.Name, name)}
		ps := api.PortSpec{Network: sn.spec.Network, Owner: api.PortOwnerRouterInterface, Host: s.Host, DNSName: "router",
			FixedIPs: []api.FixedIP{{Subnet: name, IP: sn.gw.String()}}}
		if cur, err := a.Tx.Get(key); err == nil {
			ps.MAC = decode[api.PortSpec](cur).MAC
		} else {
			ps.MAC = newMAC()
		}
		buf, err := json.Marshal(ps)
		if err != nil {
			return err
		}
		if _, _, err := a.Tx.Put(api.Resource{Kind: "port", Project: r.Project, Name: key.Name, Spec: buf}); err != nil {
			return err
		}
	}
	return nil
}

// keepFloatingIPs refuses a router change that takes away what an
// associated floating IP needs: the gateway on its external network and
// an interface on its port's subnet (as a router delete is refused).
func keepFloatingIPs(a *Admission, r *api.Resource, s api.RouterSpec) error {
	fips, err := a.Tx.List("floatingip", r.Project, false)
	if err != nil {
		return err
	}
	for _, f := range fips {
		fs := decode[api.FloatingIPSpec](f)
		if fs.Router != r.Name {
			continue
		}
		if fs.ExternalNetwork != s.ExternalNetwork {
			return &api.Error{Code: http.StatusConflict, Field: "spec.external_network",
				Message: fmt.Sprintf("floating ip %q needs router %q's gateway on external network %q; disassociate it first", f.Name, r.Name, fs.ExternalNetwork)}
		}
		port, err := a.Tx.Get(api.Key{Kind: "port", Project: r.Project, Name: fs.Port})
		if err != nil {
			continue
		}
		ps := decode[api.PortSpec](port)
		if len(ps.FixedIPs) > 0 && !routerHasSubnet(s, ps.FixedIPs[0].Subnet) {
			return &api.Error{Code: http.StatusConflict, Field: "spec.interfaces",
				Message: fmt.Sprintf("floating ip %q of port %q needs router %q's interface on subnet %q; disassociate it first", f.Name, fs.Port, r.Name, ps.FixedIPs[0].Subnet)}
		}
	}
	return nil
}

func routerHasSubnet(s api.RouterSpec, subnet string) bool {
	for _, in := range s.Interfaces {
		if in.Subnet == subnet {
			return true
		}
	}
	return false
}

func deleteRouter(a *Admission, r api.Resource) error {
	fips, err := a.Tx.List("floatingip", r.Project, false)
	if err != nil {
		return err
	}
	for _, f := range fips {
		if decode[api.FloatingIPSpec](f).Router == r.Name {
			return Conflictf("router %q still carries floating ip %q; disassociate it first", r.Name, f.Name)
		}
	}
	fgs, err := a.Tx.List("firewallgroup", r.Project, false)
	if err != nil {
		return err
	}
	for _, g := range fgs {
		if decode[api.FirewallGroupSpec](g).Router == r.Name {
			return Conflictf("router %q still has firewall group %q; delete it first", r.Name, g.Name)
		}
	}
	return syncRouterPorts(a, &r, api.RouterSpec{}, decode[api.RouterSpec](r), nil)
}

// routerLinksFree refuses a router whose host link names (its legs, named
// with a short hash) another router of any project already derives, or
// two of whose interfaces clash inside its namespace: the check a host
// runs on its plan (contract.RouterLinkClashes), here over the cluster.
// shorten is nil but in tests.
func routerLinksFree(a *Admission, r api.Resource, s api.RouterSpec, shorten func(string) string) error {
	all, err := a.Tx.List("router", "", true)
	if err != nil {
		return err
	}
	buf, err := json.Marshal(s)
	if err != nil {
		return err
	}
	mine := r
	mine.Spec = buf
	rs := []api.Resource{mine}
	for _, o := range all {
		if o.Key() != r.Key() {
			rs = append(rs, o)
		}
	}
	for _, v := range contract.RouterLinkClashes(rs, shorten) {
		if v.Key == r.Key() {
			return &api.Error{Code: http.StatusConflict, Field: v.Field, Message: v.Message}
		}
	}
	return nil
}
