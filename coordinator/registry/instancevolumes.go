package registry

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// MaxInstanceVolumes is how many volumes an instance may have attached:
// virtio disks vdb..vdz.
const MaxInstanceVolumes = 25

// checkInstanceVolumes checks the instance's boot volume and attached
// volumes: each exists in the project, has a type instances attach
// (librbd, or krbd but not to boot from: storagespec.CheckInstanceVolume,
// which the host runs too), is listed once, and is not in use by another instance. A
// volume is attached to one instance at a time: never two writers.
func checkInstanceVolumes(a *Admission, r *api.Resource, s *api.InstanceSpec) error {
	if len(s.Volumes) > MaxInstanceVolumes {
		return api.Fieldf("spec.volumes", "%d volumes is over the %d an instance can have (vdb..vdz)", len(s.Volumes), MaxInstanceVolumes)
	}
	if err := noDuplicates("spec.volumes", s.Volumes); err != nil {
		return err
	}
	check := func(field, name string) error {
		vs, err := getProjectResource[api.VolumeSpec](a.Tx, "volume", r.Project, name, field)
		if err != nil {
			return err
		}
		ts, err := getGlobal[api.VolumeTypeSpec](a.Tx, "volumetype", storagespec.TypeOf(vs), field)
		if err != nil {
			return err
		}
		if fe := storagespec.CheckInstanceVolume(field, name, storagespec.TypeOf(vs), ts, field == "spec.boot_volume"); fe != nil {
			return fe
		}
		if other, ok, err := instanceUsing(a.Tx, r.Project, name, r.Name); err != nil {
			return err
		} else if ok {
			return &api.Error{Code: http.StatusConflict, Field: field,
				Message: fmt.Sprintf("volume %q is attached to instance %q; detach it there first", name, other)}
		}
		return nil
	}
	if s.BootVolume != "" {
		if err := check("spec.boot_volume", s.BootVolume); err != nil {
			return err
		}
	}
	for i, v := range s.Volumes {
		field := fmt.Sprintf("spec.volumes[%d]", i)
		if v == s.BootVolume || (v == s.RootVolume && v != "") {
			return api.Fieldf(field, "volume %q is the instance's root disk", v)
		}
		if err := check(field, v); err != nil {
			return err
		}
	}
	return nil
}

// instanceUsing names the instance of project (other than except) that
// boots from volume or has it attached.
func instanceUsing(tx *store.Tx, project, volume, except string) (string, bool, error) {
	ins, err := tx.List("instance", project, false)
	if err != nil {
		return "", false, err
	}
	for _, in := range ins {
		if in.Name == except {
			continue
		}
		s := decode[api.InstanceSpec](in)
		if s.BootVolume == volume || s.RootVolume == volume || slices.Contains(s.Volumes, volume) {
			return in.Name, true, nil
		}
	}
	return "", false, nil
}

// RootVolumeName is the name of the volume an instance's root disk is
// cloned into from an image in Ceph.
func RootVolumeName(instance string) string {
	n := instance + "-root"
	if len(n) <= api.MaxNameLen {
		return n
	}
	return strings.TrimRight(NetworkPortName(instance, "root"), "-")
}

// makeRootVolume makes the instance's root disk, in the same commit: a
// volume that is a copy-on-write clone of the image in Ceph, of the
// flavor's disk size (at least the image's), admitted like any volume.
func makeRootVolume(a *Admission, r *api.Resource, s *api.InstanceSpec, fl computespec.Flavor, img api.ImageSpec) error {
	name := RootVolumeName(r.Name)
	key := api.Key{Kind: "volume", Project: r.Project, Name: name}
	if _, err := a.Tx.Get(key); err == nil {
		return &api.Error{Code: http.StatusConflict, Field: "spec.image", Message: fmt.Sprintf("volume %q exists already", name)}
	}
	size := max(fl.DiskGiB, int((img.SizeBytes+storagespec.GiB-1)/storagespec.GiB), 1)
	vs := &api.VolumeSpec{SizeGiB: size, Image: s.Image}
	pa := *a
	pa.Prev = nil
	vr := api.Resource{Kind: "volume", Project: r.Project, Name: name}
	if err := admitVolume(&pa, &vr, vs); err != nil {
		if fe, ok := err.(*api.FieldError); ok {
			return api.Fieldf("spec.image", "root volume %q: %s: %s", name, fe.Field, fe.Message)
		}
		return fmt.Errorf("root volume %q: %w", name, err)
	}
	if err := putSpec(a.Tx, vr, vs); err != nil {
		return err
	}
	s.RootVolume = name
	return nil
}

// liveMovableVolumes refuses a live migration of an instance with a krbd
// volume (storagespec.CheckLiveMigration, which the host runs too).
func liveMovableVolumes(a *Admission, project string, s *api.InstanceSpec, field string) error {
	for _, name := range s.Volumes {
		vs, err := getProjectResource[api.VolumeSpec](a.Tx, "volume", project, name, field)
		if err != nil {
			return err
		}
		ts, err := getGlobal[api.VolumeTypeSpec](a.Tx, "volumetype", storagespec.TypeOf(vs), field)
		if err != nil {
			return err
		}
		if fe := storagespec.CheckLiveMigration(field, name, ts.AttachMode == "krbd"); fe != nil {
			return fe
		}
	}
	return nil
}
