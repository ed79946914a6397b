package registry

import (
	"encoding/json"

	"github.com/strata-infra/strata/pkg/api"
)

// HostConfigKind is an operator's desired settings for one host, named
// after it: drained hosts get no new placements. It is desired state, so a
// drain is committed and bumps the epoch like any change, and it rides in
// that host's plan so the agent can publish it in gossip.
func HostConfigKind() *Kind {
	return &Kind{
		Name: "hostconfig", Plural: "hostconfigs", Scope: Global, Order: 1,
		AdminWrite: true,
		NewSpec:    func() any { return &api.HostConfigSpec{} },
		Admit: func(_ *Admission, r *api.Resource, spec any) error {
			s := spec.(*api.HostConfigSpec)
			if len(s.Reason) > MaxDescriptionLen {
				return api.Fieldf("spec.reason", "is %d characters long, at most %d allowed", len(s.Reason), MaxDescriptionLen)
			}
			return nil
		},
		OnHost: func(r api.Resource, host string) bool { return r.Name == host },
		Schema: map[string]any{
			"type": "object", "additionalProperties": false,
			"properties": map[string]any{
				"drained": map[string]any{"type": "boolean"},
				"reason":  map[string]any{"type": "string", "maxLength": MaxDescriptionLen},
			},
		},
	}
}

// HostConfig decodes a hostconfig resource's spec.
func HostConfig(r api.Resource) api.HostConfigSpec {
	var s api.HostConfigSpec
	_ = json.Unmarshal(r.Spec, &s)
	return s
}
