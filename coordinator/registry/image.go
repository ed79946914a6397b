package registry

import (
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// ImageKind is a bootable disk image: a qcow2 or raw file at a local path
// on the hosts that run instances of it (RBD-backed once storage lands).
// Global, admin-written, public-read, on every host's plan (see FlavorKind).
func ImageKind() *Kind {
	return &Kind{
		Name: "image", Plural: "images", Scope: Global, Order: 41,
		AdminWrite: true, PublicRead: true,
		NewSpec: func() any { return &api.ImageSpec{} },
		Admit: func(a *Admission, r *api.Resource, spec any) error {
			s := spec.(*api.ImageSpec)
			if a.Prev != nil && *s != decode[api.ImageSpec](*a.Prev) {
				// Disks of placed instances are backed by the old file.
				if err := refuseIfUsed(a, *a.Prev, "image"); err != nil {
					return err
				}
			}
			if s.HypervisorType != "" && s.HypervisorType != "kvm" && s.HypervisorType != "qemu" {
				return api.Fieldf("spec.hypervisor_type", "%q: want kvm, qemu or empty", s.HypervisorType)
			}
			if err := specField(imageOf(r.Name, *s).Validate()); err != nil {
				return err
			}
			if s.Pool != "" {
				if fe := storagespec.ValidatePool("spec.pool", s.Pool); fe != nil {
					return fe
				}
				if s.Format != string(computespec.FormatRaw) {
					return api.Fieldf("spec.format", "an image in Ceph is raw, not %q", s.Format)
				}
			}
			return nil
		},
		BeforeDelete: func(a *Admission, r api.Resource) error {
			if err := refuseIfUsed(a, r, "image"); err != nil {
				return err
			}
			return refuseIfCloned(a, r)
		},
		Schema: map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"format", "path"},
			"properties": map[string]any{
				"format":          map[string]any{"type": "string", "enum": []string{string(computespec.FormatQCOW2), string(computespec.FormatRaw)}},
				"path":            map[string]any{"type": "string"},
				"architecture":    map[string]any{"type": "string"},
				"hypervisor_type": map[string]any{"type": "string", "enum": []string{"", "kvm", "qemu"}},
				"pool":            map[string]any{"type": "string"},
				"size_bytes":      map[string]any{"type": "integer", "minimum": 0},
			},
		},
	}
}

func imageOf(name string, s api.ImageSpec) computespec.Image {
	return computespec.Image{ID: name, Format: computespec.ImageFormat(s.Format), Path: s.Path}
}
