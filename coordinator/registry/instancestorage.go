package registry

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// instanceStorage is what an instance's disks need of its host: the
// storage backend ("rbd:<pool>") of each Ceph pool its root disk and
// volumes live in, sorted. The root disk of an image in Ceph is made with
// the default volume type, so it lives in that type's pool.
func instanceStorage(a *Admission, r *api.Resource, s *api.InstanceSpec, img api.ImageSpec) ([]string, error) {
	var out []string
	add := func(typ string) error {
		ts, err := getGlobal[api.VolumeTypeSpec](a.Tx, "volumetype", typ, "spec.volumes")
		if err != nil {
			return err
		}
		if b := storagespec.Backend(ts.Pool); !slices.Contains(out, b) {
			out = append(out, b)
		}
		return nil
	}
	if img.Pool != "" && s.RootVolume == "" {
		if err := add(storagespec.DefaultType); err != nil {
			return nil, err
		}
	}
	for _, v := range append([]string{s.BootVolume, s.RootVolume}, s.Volumes...) {
		if v == "" {
			continue
		}
		vs, err := getProjectResource[api.VolumeSpec](a.Tx, "volume", r.Project, v, "spec.volumes")
		if err != nil {
			return nil, err
		}
		if err := add(storagespec.TypeOf(vs)); err != nil {
			return nil, err
		}
	}
	slices.Sort(out)
	return out, nil
}

// checkHostStorage refuses volumes newly attached to an instance that
// stays on its host when the host is not configured for their pools: its
// qemu could not open them. The scheduler's view of the host is what
// placed the instance there.
func checkHostStorage(a *Admission, r *api.Resource, s, p *api.InstanceSpec) error {
	if a.Scheduler == nil || s.Host == "" {
		return nil
	}
	have, known := a.Scheduler.HostStorage(s.Host)
	if !known {
		return nil // a host the scheduler has not heard of yet: nothing to compare
	}
	for i, v := range s.Volumes {
		if slices.Contains(p.Volumes, v) {
			continue
		}
		field := fmt.Sprintf("spec.volumes[%d]", i)
		vs, err := getProjectResource[api.VolumeSpec](a.Tx, "volume", r.Project, v, field)
		if err != nil {
			return err
		}
		ts, err := getGlobal[api.VolumeTypeSpec](a.Tx, "volumetype", storagespec.TypeOf(vs), field)
		if err != nil {
			return err
		}
		if !slices.Contains(have, storagespec.Backend(ts.Pool)) {
			return &api.Error{Code: http.StatusConflict, Field: field,
				Message: fmt.Sprintf("volume %q lives in Ceph pool %s, which host %s (where instance %q runs) is not configured for", v, ts.Pool, s.Host, r.Name)}
		}
	}
	return nil
}
