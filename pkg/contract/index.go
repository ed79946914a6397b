// Package contract is what a host checks before it applies a plan and the
// coordinator checks before it commits one: the mapping of stored network
// resources onto the host-side desired state of routers and security
// groups (netspec), and the cross-resource invariants a host relies on.
// Both sides import it, so a state the API accepts is one every host can
// apply. It is pure: no I/O, no host access.
package contract

import (
	"encoding/json"

	"github.com/strata-infra/strata/pkg/api"
)

type key struct{ project, name string }

// Index holds a set of resources (a host's plan, or a project and the
// global kinds at the coordinator) by kind and project/name.
type Index struct {
	all      []api.Resource
	networks map[key]api.NetworkSpec
	subnets  map[key]api.SubnetSpec
	ports    map[key]api.PortSpec
	external map[string]api.ExternalNetworkSpec
}

// NewIndex indexes rs. Specs that do not decode are indexed as zero
// values; Check reports them.
func NewIndex(rs []api.Resource) *Index {
	ix := &Index{all: rs, networks: map[key]api.NetworkSpec{}, subnets: map[key]api.SubnetSpec{},
		ports: map[key]api.PortSpec{}, external: map[string]api.ExternalNetworkSpec{}}
	for _, r := range rs {
		k := key{r.Project, r.Name}
		switch r.Kind {
		case "network":
			ix.networks[k] = Decode[api.NetworkSpec](r)
		case "subnet":
			ix.subnets[k] = Decode[api.SubnetSpec](r)
		case "port":
			ix.ports[k] = Decode[api.PortSpec](r)
		case "externalnetwork":
			ix.external[r.Name] = Decode[api.ExternalNetworkSpec](r)
		}
	}
	return ix
}

// Kind returns the indexed resources of one kind, in their given order.
func (ix *Index) Kind(kind string) []api.Resource {
	var out []api.Resource
	for _, r := range ix.all {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// Decode decodes a resource's spec; a spec that does not decode is the
// zero value.
func Decode[T any](r api.Resource) T {
	var v T
	_ = json.Unmarshal(r.Spec, &v)
	return v
}

// routerPort is a router's interface port on a subnet, which carries the
// MAC the router's leg must have.
func (ix *Index) routerPort(project, router, subnet string) (string, api.PortSpec, bool) {
	name := api.RouterPortName(router, subnet)
	ps, ok := ix.ports[key{project, name}]
	return name, ps, ok && ps.Owner == api.PortOwnerRouterInterface
}
