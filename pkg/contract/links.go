package contract

import (
	"fmt"
	"sort"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netspec"
)

// RouterLinkClashes reports every router whose link names clash: a host
// side leg (named with 11 hex digits of a hash, netspec.RouterGatewayLeg
// and RouterInternalLeg) that another router in rs also derives, or two
// interfaces of one router whose legs inside its namespace share a name.
// The hashes are too short to be collision-free by themselves, so the
// coordinator refuses a router that would clash with any router of the
// cluster, and a host refuses a plan in which two do: the second router's
// veth would otherwise be taken for the first's. Every name goes through
// shorten first unless it is nil: tests shorten the names so that clashes
// come at once.
func RouterLinkClashes(rs []api.Resource, shorten func(string) string) []Violation {
	name := func(s string) string {
		if shorten != nil {
			return shorten(s)
		}
		return s
	}
	type use struct {
		key   api.Key
		field string
	}
	var routers []api.Resource
	for _, r := range rs {
		if r.Kind == "router" {
			routers = append(routers, r)
		}
	}
	// Sorted, so the router named in each message does not depend on the
	// order rs came in.
	sort.Slice(routers, func(i, j int) bool { return routers[i].Key().String() < routers[j].Key().String() })
	hostSide := map[string]use{}
	var out []Violation
	add := func(r api.Resource, field, format string, a ...any) {
		out = append(out, Violation{Key: r.Key(), Field: field, Message: fmt.Sprintf(format, a...)})
	}
	for _, r := range routers {
		id := netspec.ResourceID(r.Project, r.Name)
		rs := Decode[api.RouterSpec](r)
		type leg struct{ host, inner, field string }
		var legs []leg
		if rs.ExternalNetwork != "" {
			legs = append(legs, leg{name(netspec.RouterGatewayLeg(id)), "", "name"})
		}
		for i, in := range rs.Interfaces {
			ifID := netspec.ResourceID(r.Project, api.RouterPortName(r.Name, in.Subnet))
			legs = append(legs, leg{name(netspec.RouterInternalLeg(id, ifID)), name(netspec.RouterInnerLeg(ifID)),
				fmt.Sprintf("spec.interfaces[%d].subnet", i)})
		}
		inner := map[string]string{}
		for _, l := range legs {
			if o, ok := hostSide[l.host]; ok {
				add(r, l.field, "its host link %q would be that of router %s (%s); choose another name", l.host, o.key, o.field)
				if o.key != r.Key() {
					add(api.Resource{Kind: o.key.Kind, Project: o.key.Project, Name: o.key.Name}, o.field,
						"its host link %q would be that of router %s (%s)", l.host, r.Key(), l.field)
				}
			} else {
				hostSide[l.host] = use{r.Key(), l.field}
			}
			if l.inner == "" {
				continue
			}
			if f, ok := inner[l.inner]; ok {
				add(r, l.field, "its link %q in the router's namespace would be that of %s too; choose another subnet name", l.inner, f)
			}
			inner[l.inner] = l.field
		}
	}
	return out
}
