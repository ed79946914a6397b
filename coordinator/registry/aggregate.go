package registry

import (
	"fmt"
	"slices"
	"strings"

	"github.com/strata-infra/strata/coordinator/scheduler"
	"github.com/strata-infra/strata/pkg/api"
)

// AggregateKind is a host aggregate (admin, global): named hosts with
// key/value metadata that flavors' extra specs select. It reaches no
// host's plan; only the scheduler reads it.
func AggregateKind() *Kind {
	str := map[string]any{"type": "string"}
	return &Kind{
		Name: "aggregate", Plural: "aggregates", Scope: Global, Order: 42, AdminWrite: true,
		NewSpec: func() any { return &api.AggregateSpec{} },
		Admit: func(a *Admission, r *api.Resource, spec any) error {
			s := spec.(*api.AggregateSpec)
			for i, h := range s.Hosts {
				if fe := api.ValidateName(fmt.Sprintf("spec.hosts[%d]", i), h); fe != nil {
					return fe
				}
				if slices.Contains(s.Hosts[:i], h) {
					return api.Fieldf(fmt.Sprintf("spec.hosts[%d]", i), "%q is listed twice", h)
				}
			}
			for k, v := range s.Metadata {
				if k == "" || len(k) > 255 || strings.ContainsAny(k, " \t\n=") || len(v) > 255 {
					return api.Fieldf("spec.metadata", "key %q: keys are 1..255 characters without spaces or '=', values at most 255", k)
				}
			}
			return nil
		},
		OnHost: func(api.Resource, string) bool { return false },
		Schema: map[string]any{
			"type": "object", "additionalProperties": false,
			"properties": map[string]any{
				"hosts":    map[string]any{"type": "array", "items": str},
				"metadata": map[string]any{"type": "object", "additionalProperties": str},
			},
		},
	}
}

// ServerGroupKind is a project's server group: instances naming it are
// placed by its policy. A group in use cannot be deleted, and its policy
// cannot change (members were placed by it).
func ServerGroupKind() *Kind {
	return &Kind{
		Name: "servergroup", Plural: "servergroups", Scope: Project, Order: 45,
		NewSpec: func() any { return &api.ServerGroupSpec{} },
		Admit: func(a *Admission, r *api.Resource, spec any) error {
			s := spec.(*api.ServerGroupSpec)
			if !slices.Contains(scheduler.Policies, s.Policy) {
				return api.Fieldf("spec.policy", "%q: want one of %s", s.Policy, strings.Join(scheduler.Policies, ", "))
			}
			if a.Prev != nil && decode[api.ServerGroupSpec](*a.Prev).Policy != s.Policy {
				return api.Fieldf("spec.policy", "cannot change; make a new group")
			}
			return nil
		},
		BeforeDelete: func(a *Admission, r api.Resource) error {
			ins, err := a.Tx.List("instance", r.Project, false)
			if err != nil {
				return err
			}
			for _, in := range ins {
				if decode[api.InstanceSpec](in).Group == r.Name {
					return Conflictf("server group %q has member %q; delete the instance first", r.Name, in.Name)
				}
			}
			return nil
		},
		OnHost: func(api.Resource, string) bool { return false },
		Schema: map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"policy"},
			"properties": map[string]any{
				"policy": map[string]any{"type": "string", "enum": scheduler.Policies},
			},
		},
	}
}
