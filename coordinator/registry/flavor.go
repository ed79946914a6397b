package registry

import (
	"strings"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
)

// FlavorKind is an instance size. Flavors are global, changed by admins
// and read by every project. They go to every host's plan: they are few and
// small, and a plan delta carries only the resources a commit changed, so
// a host that gets its first instance of a flavor must already hold it.
func FlavorKind() *Kind {
	integer := func(min int) map[string]any { return map[string]any{"type": "integer", "minimum": min} }
	return &Kind{
		Name: "flavor", Plural: "flavors", Scope: Global, Order: 40,
		AdminWrite: true, PublicRead: true,
		NewSpec:      func() any { return &api.FlavorSpec{} },
		Admit:        admitFlavor,
		BeforeDelete: func(a *Admission, r api.Resource) error { return refuseIfUsed(a, r, "flavor") },
		Schema: map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"vcpus", "ram_mib"},
			"properties": map[string]any{
				"vcpus": integer(1), "ram_mib": integer(64), "disk_gib": integer(0),
				"extra_specs": map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}},
			},
		},
	}
}

func admitFlavor(a *Admission, r *api.Resource, spec any) error {
	s := spec.(*api.FlavorSpec)
	if a.Prev != nil {
		prev := decode[api.FlavorSpec](*a.Prev)
		// Placed instances were counted with the old size.
		if prev.VCPUs != s.VCPUs || prev.RAMMiB != s.RAMMiB || prev.DiskGiB != s.DiskGiB {
			if err := refuseIfUsed(a, *a.Prev, "flavor"); err != nil {
				return err
			}
		}
	}
	return specField(flavorOf(r.Name, *s).Validate())
}

func flavorOf(name string, s api.FlavorSpec) computespec.Flavor {
	return computespec.Flavor{Name: name, VCPUs: s.VCPUs, RAMMiB: s.RAMMiB, DiskGiB: s.DiskGiB, ExtraSpecs: s.ExtraSpecs}
}

// specField maps a computespec field error ("flavor.ram_mib") onto the
// API's spelling ("spec.ram_mib"); the name is the resource's own.
func specField(err error) error {
	fe, ok := err.(*computespec.FieldError)
	if !ok {
		return err
	}
	_, field, _ := strings.Cut(fe.Field, ".")
	switch field {
	case "name", "id":
		return api.Fieldf("name", "%s", fe.Msg)
	}
	return api.Fieldf("spec."+field, "%s", fe.Msg)
}

// refuseIfUsed refuses to delete or resize a flavor or image an instance
// names (field is "flavor" or "image").
func refuseIfUsed(a *Admission, r api.Resource, field string) error {
	all, err := a.Tx.List("instance", "", true)
	if err != nil {
		return err
	}
	for _, in := range all {
		s := decode[api.InstanceSpec](in)
		if (field == "flavor" && s.Flavor == r.Name) || (field == "image" && s.Image == r.Name) {
			return Conflictf("%s %q is used by instance %s; delete it first", field, r.Name, in.Key())
		}
	}
	return nil
}
