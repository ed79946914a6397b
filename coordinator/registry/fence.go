package registry

import (
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// DefaultFenceExpiry is how long a fence's blocklist entries last unless
// the storage controller renews them (it does, while the fence holds).
const DefaultFenceExpiry = 24 * 60 * 60

// FenceKind is the fence of a host gossip declared dead (kind "fence",
// admin, global): the recovery controller commits it, the active storage
// controller puts the host's Ceph client addresses on the OSD blocklist
// and breaks their RBD locks and reports it "fenced"; only then is anything
// of the host's rebuilt elsewhere. Every storage controller host gets it
// in its plan. Fences are the record of what was fenced when, released once
// the host came back clean; the coordinator deletes a released fence only
// once it is older than its fence_retention.
func FenceKind() *Kind {
	str := map[string]any{"type": "string"}
	return &Kind{
		Name: "fence", Plural: "fences", Scope: Global, Order: 1,
		AdminWrite: true,
		NewSpec:    func() any { return &api.FenceSpec{} },
		Admit:      admitFence,
		Schema: map[string]any{
			"type": "object", "additionalProperties": false,
			"properties": map[string]any{
				"host": str, "reason": str, "dead_since": str,
				"addrs":          map[string]any{"type": "array", "items": str, "maxItems": 16},
				"expiry_seconds": map[string]any{"type": "integer", "minimum": 0},
				"released":       map[string]any{"type": "boolean"},
				"released_at":    str,
			},
		},
	}
}

func admitFence(a *Admission, r *api.Resource, spec any) error {
	s := spec.(*api.FenceSpec)
	if fe := api.ValidateName("spec.host", s.Host); fe != nil {
		return fe
	}
	if len(s.Addrs) > 16 {
		return api.Fieldf("spec.addrs", "has %d addresses, at most 16", len(s.Addrs))
	}
	for _, ad := range s.Addrs {
		if storagespec.AddrIP(ad) == "" {
			return api.Fieldf("spec.addrs", "%q is neither an IP nor a Ceph client address ip:port/nonce", ad)
		}
	}
	if s.ExpirySeconds == 0 {
		s.ExpirySeconds = DefaultFenceExpiry
	}
	if s.ExpirySeconds < 60 {
		return api.Fieldf("spec.expiry_seconds", "%d is too short to hold a fence (at least 60)", s.ExpirySeconds)
	}
	if len(s.Reason) > MaxDescriptionLen {
		return api.Fieldf("spec.reason", "is %d characters long, at most %d allowed", len(s.Reason), MaxDescriptionLen)
	}
	if a.Prev == nil {
		return nil
	}
	p := decode[api.FenceSpec](*a.Prev)
	switch {
	case s.Host != p.Host:
		return api.Fieldf("spec.host", "cannot change from %q; a fence is of one host", p.Host)
	case p.Released && !s.Released:
		return api.Fieldf("spec.released", "a released fence stays released; fence the host anew")
	}
	return nil
}
