package plan

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/strata-infra/strata/pkg/api"
)

// Host is one pass's plan, decoded once: every subsystem reads the typed
// resources here instead of decoding specs itself, so a spec that does not
// decode is found once, reported against its own resource, and skipped by
// everyone rather than failing a whole subsystem.
//
// It embeds the Snapshot it was decoded from (Epoch, Resources, Kind) for
// kinds no subsystem has typed yet.
type Host struct {
	*Snapshot

	Networks         Kind[api.NetworkSpec]
	Subnets          Kind[api.SubnetSpec]
	Ports            Kind[api.PortSpec]
	ExternalNetworks Kind[api.ExternalNetworkSpec]
	Routers          Kind[api.RouterSpec]
	FloatingIPs      Kind[api.FloatingIPSpec]
	FirewallGroups   Kind[api.FirewallGroupSpec]
	SecurityGroups   Kind[api.SecurityGroupSpec]
	Instances        Kind[api.InstanceSpec]
	Flavors          Kind[api.FlavorSpec]
	Images           Kind[api.ImageSpec]
	HostConfigs      Kind[api.HostConfigSpec]

	// Invalid holds the resources whose spec does not decode, with why.
	Invalid map[api.Key]error
}

// Item is one resource with its spec decoded. Resource.Spec keeps the raw
// JSON; Spec (which shadows it) is the typed value.
type Item[S any] struct {
	api.Resource
	Spec S
}

// Kind is the decoded resources of one kind, sorted by key.
type Kind[S any] struct {
	Items []Item[S]
	index map[api.Key]int
}

// Get returns the resource project/name of this kind.
func (k *Kind[S]) Get(project, name string) (Item[S], bool) {
	if len(k.Items) == 0 {
		return Item[S]{}, false
	}
	i, ok := k.index[api.Key{Kind: k.Items[0].Kind, Project: project, Name: name}]
	if !ok {
		return Item[S]{}, false
	}
	return k.Items[i], true
}

func (k *Kind[S]) add(r api.Resource, invalid map[api.Key]error) {
	var s S
	if len(r.Spec) > 0 {
		if err := json.Unmarshal(r.Spec, &s); err != nil {
			invalid[r.Key()] = fmt.Errorf("%s %s/%s: spec: %w", r.Kind, r.Project, r.Name, err)
			return
		}
	}
	if k.index == nil {
		k.index = map[api.Key]int{}
	}
	k.index[r.Key()] = len(k.Items)
	k.Items = append(k.Items, Item[S]{Resource: r, Spec: s})
}

// Decode types a snapshot's resources. It never fails: a resource whose
// spec does not decode goes to Invalid.
func Decode(s *Snapshot) *Host {
	if s == nil {
		s = &Snapshot{}
	}
	h := &Host{Snapshot: s, Invalid: map[api.Key]error{}}
	rs := s.Resources
	if !sort.SliceIsSorted(rs, func(i, j int) bool { return rs[i].Key().String() < rs[j].Key().String() }) {
		rs = append([]api.Resource(nil), rs...)
		sort.Slice(rs, func(i, j int) bool { return rs[i].Key().String() < rs[j].Key().String() })
	}
	for _, r := range rs {
		switch r.Kind {
		case "network":
			h.Networks.add(r, h.Invalid)
		case "subnet":
			h.Subnets.add(r, h.Invalid)
		case "port":
			h.Ports.add(r, h.Invalid)
		case "externalnetwork":
			h.ExternalNetworks.add(r, h.Invalid)
		case "router":
			h.Routers.add(r, h.Invalid)
		case "floatingip":
			h.FloatingIPs.add(r, h.Invalid)
		case "firewallgroup":
			h.FirewallGroups.add(r, h.Invalid)
		case "securitygroup":
			h.SecurityGroups.add(r, h.Invalid)
		case "instance":
			h.Instances.add(r, h.Invalid)
		case "flavor":
			h.Flavors.add(r, h.Invalid)
		case "image":
			h.Images.add(r, h.Invalid)
		case "hostconfig":
			h.HostConfigs.add(r, h.Invalid)
		}
	}
	return h
}
