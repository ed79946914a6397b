package registry

import (
	"github.com/strata-infra/strata/coordinator/scheduler"
	"github.com/strata-infra/strata/pkg/api"
)

// MaxDescriptionLen bounds free-text descriptions.
const MaxDescriptionLen = 255

// ProjectKind is the tenant boundary every project-scoped kind lives in.
func ProjectKind(reg *Registry) *Kind {
	return &Kind{
		Name: "project", Plural: "projects", Scope: Global, Order: 0,
		AdminWrite: true,
		NewSpec:    func() any { return &api.ProjectSpec{} },
		Admit: func(_ *Admission, _ *api.Resource, spec any) error {
			s := spec.(*api.ProjectSpec)
			if len(s.Description) > MaxDescriptionLen {
				return api.Fieldf("spec.description", "is %d characters long, at most %d allowed", len(s.Description), MaxDescriptionLen)
			}
			return nil
		},
		// A project goes only when it is empty, so nothing is orphaned.
		BeforeDelete: func(a *Admission, r api.Resource) error {
			for _, k := range reg.Kinds() {
				if k.Scope != Project {
					continue
				}
				rs, err := a.Tx.List(k.Name, r.Name, false)
				if err != nil {
					return err
				}
				if len(rs) > 0 {
					return Conflictf("project %q still has %d %s (first: %q); delete them first", r.Name, len(rs), k.Plural, rs[0].Name)
				}
			}
			// Its quota goes with it: a project made again under the
			// name starts from the defaults.
			_, err := a.Tx.Delete(api.Key{Kind: "quota", Name: r.Name})
			return err
		},
		Schema: map[string]any{
			"type":                 "object",
			"additionalProperties": false,
			"properties": map[string]any{
				"description": map[string]any{"type": "string", "maxLength": MaxDescriptionLen},
			},
		},
	}
}

// Default returns the registry of the kinds this build serves.
func Default() *Registry {
	reg := &Registry{byName: map[string]*Kind{}, Settings: DefaultSettings(), Scheduler: scheduler.New(scheduler.DefaultConfig())}
	_ = reg.Add(ProjectKind(reg))
	_ = reg.Add(QuotaKind())
	_ = reg.Add(HostConfigKind())
	_ = reg.Add(HostIdentityKind())
	_ = reg.Add(GossipKeyringKind())
	_ = reg.Add(NetworkKind())
	_ = reg.Add(SubnetKind())
	_ = reg.Add(PortKind())
	_ = reg.Add(FlavorKind())
	_ = reg.Add(ImageKind())
	_ = reg.Add(AggregateKind())
	_ = reg.Add(ServerGroupKind())
	_ = reg.Add(VolumeTypeKind())
	_ = reg.Add(VolumeKind())
	_ = reg.Add(VolumeSnapshotKind())
	_ = reg.Add(InstanceKind(reg))
	_ = reg.Add(SecurityGroupKind())
	_ = reg.Add(ExternalNetworkKind())
	_ = reg.Add(RouterKind())
	_ = reg.Add(FloatingIPKind())
	_ = reg.Add(FirewallGroupKind())
	_ = reg.Add(FenceKind())
	return reg
}
