package registry

import (
	"encoding/json"
	"net/netip"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/gossip"
)

// HostIdentityKind binds a host's gossip address and VTEP to its name. The
// host's agent registers it with its own credential (PUT
// /v1/hosts/{host}/identity); every host's plan carries every identity so
// each agent's tunnel mesh admits only registered hosts.
func HostIdentityKind() *Kind {
	return &Kind{
		Name: "hostidentity", Plural: "hostidentities", Scope: Global, Order: 1,
		AdminWrite: true,
		NewSpec:    func() any { return &api.HostIdentitySpec{} },
		Admit: func(_ *Admission, _ *api.Resource, spec any) error {
			s := spec.(*api.HostIdentitySpec)
			if err := CheckHostAddr("spec.addr", s.Addr, true); err != nil {
				return err
			}
			switch s.Role {
			case "":
			case api.IdentityCoordinator:
				if s.VTEP != "" {
					return api.Fieldf("spec.vtep", "a coordinator has no VTEP")
				}
			default:
				return api.Fieldf("spec.role", "%q is not \"\" (a host) or %q", s.Role, api.IdentityCoordinator)
			}
			return CheckHostAddr("spec.vtep", s.VTEP, false)
		},
		Schema: map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"addr"},
			"properties": map[string]any{"addr": map[string]any{"type": "string"}, "vtep": map[string]any{"type": "string"},
				"role": map[string]any{"type": "string", "enum": []string{"", api.IdentityCoordinator}}},
		},
	}
}

// CheckHostAddr accepts one unicast IP address in canonical form, without
// a zone ("" only when not required).
func CheckHostAddr(field, s string, required bool) error {
	if s == "" {
		if required {
			return api.Fieldf(field, "must be set")
		}
		return nil
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return api.Fieldf(field, "%q is not an IP address", s)
	case a.Zone() != "":
		return api.Fieldf(field, "%q has a zone; zones are not allowed", s)
	case a.String() != s:
		return api.Fieldf(field, "%q is not in canonical form (%s)", s, a)
	case !a.IsGlobalUnicast() && !a.IsPrivate() && !a.IsLoopback():
		return api.Fieldf(field, "%q is not a unicast address", s)
	}
	return nil
}

// HostIdentity decodes a hostidentity resource's spec.
func HostIdentity(r api.Resource) api.HostIdentitySpec {
	var s api.HostIdentitySpec
	_ = json.Unmarshal(r.Spec, &s)
	return s
}

// GossipKeyringKind holds the pool's gossip keys. Only admins read or
// write it; every host's plan carries it so keys rotate without restarts.
func GossipKeyringKind() *Kind {
	return &Kind{
		Name: "gossipkeyring", Plural: "gossipkeyrings", Scope: Global, Order: 1,
		AdminWrite: true,
		NewSpec:    func() any { return &api.GossipKeyringSpec{} },
		Admit: func(_ *Admission, r *api.Resource, spec any) error {
			if r.Name != api.GossipKeyringName {
				return api.Fieldf("name", "the gossip keyring is named %q", api.GossipKeyringName)
			}
			_, _, err := gossip.DecodeKeyring(*spec.(*api.GossipKeyringSpec))
			return err
		},
		Schema: map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"keys", "primary"},
			"properties": map[string]any{
				"keys":    map[string]any{"type": "array", "items": map[string]any{"type": "string"}, "maxItems": 4},
				"primary": map[string]any{"type": "string"},
			},
		},
	}
}

// RegisterCoordinator binds coordinator name to its gossip address in tx:
// the coordinator's own credential is its store, so a member holding only
// the gossip key cannot pass for it. A host registered under the name
// keeps it (a conflict), as a coordinator's keeps it from any agent.
func RegisterCoordinator(tx *store.Tx, name string, addr netip.Addr) (bool, error) {
	if fe := api.ValidateName("name", name); fe != nil {
		return false, fe
	}
	spec := api.HostIdentitySpec{Addr: addr.String(), Role: api.IdentityCoordinator}
	if err := CheckHostAddr("gossip address", spec.Addr, true); err != nil {
		return false, err
	}
	if old, err := tx.Get(api.Key{Kind: "hostidentity", Name: name}); err == nil && HostIdentity(old).Role != api.IdentityCoordinator {
		return false, Conflictf("coordinator name %q is a registered host's; give the coordinator another name", name)
	}
	buf, _ := json.Marshal(spec)
	_, changed, err := tx.Put(api.Resource{Kind: "hostidentity", Name: name, Spec: buf})
	return changed, err
}
