package registry

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// Volumes, volume types and volume snapshots ride in every host's plan: the
// storage controller (on whichever host holds the controller lease) needs
// all of them, and an instance's host the ones it attaches.

// VolumeTypeKind is where volumes live (a Ceph pool) and how hosts attach
// them. Global, admin-written, public-read.
func VolumeTypeKind() *Kind {
	str := map[string]any{"type": "string"}
	return &Kind{
		Name: "volumetype", Plural: "volumetypes", Scope: Global, Order: 42,
		AdminWrite: true, PublicRead: true,
		NewSpec: func() any { return &api.VolumeTypeSpec{} },
		Admit: func(a *Admission, r *api.Resource, spec any) error {
			s := spec.(*api.VolumeTypeSpec)
			if fe := storagespec.ValidateType(*s); fe != nil {
				return fe
			}
			if a.Prev != nil && decode[api.VolumeTypeSpec](*a.Prev).Pool != s.Pool {
				return api.Fieldf("spec.pool", "cannot change: its volumes live in %q", decode[api.VolumeTypeSpec](*a.Prev).Pool)
			}
			return nil
		},
		BeforeDelete: func(a *Admission, r api.Resource) error {
			return refuseIfReferenced(a, r, func(v api.VolumeSpec, _ string) bool { return storagespec.TypeOf(v) == r.Name })
		},
		Schema: map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"pool"},
			"properties": map[string]any{
				"pool":                        str,
				"attach_mode":                 map[string]any{"type": "string", "enum": []string{"", "librbd", "krbd"}},
				"cache_mode":                  map[string]any{"type": "string", "enum": []string{"", "none", "writeback", "writethrough"}},
				"cache_size_mib":              map[string]any{"type": "integer", "minimum": 0},
				"cache_high_watermark":        map[string]any{"type": "integer", "minimum": 0, "maximum": 100},
				"cache_low_watermark":         map[string]any{"type": "integer", "minimum": 0, "maximum": 100},
				"cache_max_dirty_seconds":     map[string]any{"type": "integer", "minimum": 0},
				"cache_flush_timeout_seconds": map[string]any{"type": "integer", "minimum": 0},
			},
		},
	}
}

// VolumeKind is a project's block volume.
func VolumeKind() *Kind {
	str := map[string]any{"type": "string"}
	return &Kind{
		Name: "volume", Plural: "volumes", Scope: Project, Order: 45,
		NewSpec: func() any { return &api.VolumeSpec{} },
		Admit:   admitVolume,
		BeforeDelete: func(a *Admission, r api.Resource) error {
			if in, ok, err := instanceUsing(a.Tx, r.Project, r.Name, ""); err != nil {
				return err
			} else if ok {
				return Conflictf("volume %q is attached to instance %q; detach it (stratactl instances detach-volume) or delete the instance first", r.Name, in)
			}
			if err := refuseIfAttached(a, r); err != nil {
				return err
			}
			return volumeDependents(a, r)
		},
		Schema: map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"size_gib"},
			"properties": map[string]any{
				"size_gib": map[string]any{"type": "integer", "minimum": 1, "maximum": storagespec.MaxVolumeGiB},
				"type":     str, "image": str, "snapshot": str, "volume": str,
				"flatten": map[string]any{"type": "boolean"},
			},
		},
	}
}

// volumeDependents refuses while snapshots of volume r or volumes cloned
// from it (not marked flatten) exist.
func volumeDependents(a *Admission, r api.Resource) error {
	snaps, err := a.Tx.List("volumesnapshot", r.Project, false)
	if err != nil {
		return err
	}
	for _, s := range snaps {
		if decode[api.VolumeSnapshotSpec](s).Volume == r.Name {
			return Conflictf("volume %q has snapshot %s; delete it first", r.Name, s.Key())
		}
	}
	return refuseIfReferenced(a, r, func(v api.VolumeSpec, project string) bool {
		return project == r.Project && v.Volume == r.Name
	})
}

// VolumeSnapshotKind is a snapshot of a project's volume.
func VolumeSnapshotKind() *Kind {
	return &Kind{
		Name: "volumesnapshot", Plural: "volumesnapshots", Scope: Project, Order: 46,
		NewSpec: func() any { return &api.VolumeSnapshotSpec{} },
		Admit: func(a *Admission, r *api.Resource, spec any) error {
			s := spec.(*api.VolumeSnapshotSpec)
			if a.Prev != nil && decode[api.VolumeSnapshotSpec](*a.Prev).Volume != s.Volume {
				return api.Fieldf("spec.volume", "cannot change; make a new snapshot")
			}
			_, err := getProjectResource[api.VolumeSpec](a.Tx, "volume", r.Project, s.Volume, "spec.volume")
			return err
		},
		BeforeDelete: func(a *Admission, r api.Resource) error {
			return refuseIfReferenced(a, r, func(v api.VolumeSpec, project string) bool {
				return project == r.Project && v.Snapshot == r.Name
			})
		},
		Schema: map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"volume"},
			"properties": map[string]any{"volume": map[string]any{"type": "string"}},
		},
	}
}

func admitVolume(a *Admission, r *api.Resource, spec any) error {
	s := spec.(*api.VolumeSpec)
	var prev *api.VolumeSpec
	if a.Prev != nil {
		p := decode[api.VolumeSpec](*a.Prev)
		prev = &p
	}
	if fe := storagespec.ValidateVolume(*s, prev); fe != nil {
		return fe
	}
	if prev == nil || s.SizeGiB > prev.SizeGiB {
		if err := withinQuota(a, r, s); err != nil {
			return err
		}
	}
	if prev != nil {
		return nil // its references were checked when it was made
	}
	if _, err := getGlobal[api.VolumeTypeSpec](a.Tx, "volumetype", storagespec.TypeOf(*s), "spec.type"); err != nil {
		return err
	}
	switch {
	case s.Image != "":
		im, err := getGlobal[api.ImageSpec](a.Tx, "image", s.Image, "spec.image")
		if err != nil {
			return err
		}
		if im.Pool == "" {
			return api.Fieldf("spec.image", "image %q is a local file, not in Ceph: import it (stratactl images import)", s.Image)
		}
		if uint64(s.SizeGiB)*storagespec.GiB < im.SizeBytes {
			return api.Fieldf("spec.size_gib", "%d GiB is smaller than image %q (%d bytes)", s.SizeGiB, s.Image, im.SizeBytes)
		}
	case s.Snapshot != "":
		sn, err := getProjectResource[api.VolumeSnapshotSpec](a.Tx, "volumesnapshot", r.Project, s.Snapshot, "spec.snapshot")
		if err != nil {
			return err
		}
		return notSmaller(a.Tx, r.Project, sn.Volume, s.SizeGiB)
	case s.Volume != "":
		if s.Volume == r.Name {
			return api.Fieldf("spec.volume", "a volume cannot be cloned from itself")
		}
		return notSmaller(a.Tx, r.Project, s.Volume, s.SizeGiB)
	}
	return nil
}

// notSmaller refuses a clone smaller than the volume it comes from.
func notSmaller(tx *store.Tx, project, source string, sizeGiB int) error {
	src, err := getProjectResource[api.VolumeSpec](tx, "volume", project, source, "spec.volume")
	if err != nil {
		return err
	}
	if sizeGiB < src.SizeGiB {
		return api.Fieldf("spec.size_gib", "%d GiB is smaller than its source volume %q (%d GiB)", sizeGiB, source, src.SizeGiB)
	}
	return nil
}

func getGlobal[T any](tx *store.Tx, kind, name, field string) (T, error) {
	return getProjectResource[T](tx, kind, "", name, field)
}

func getProjectResource[T any](tx *store.Tx, kind, project, name, field string) (T, error) {
	var zero T
	if name == "" {
		return zero, api.Fieldf(field, "must name a %s", kind)
	}
	r, err := tx.Get(api.Key{Kind: kind, Project: project, Name: name})
	if errors.Is(err, store.ErrNotFound) {
		return zero, api.Fieldf(field, "unknown %s %q", kind, name)
	}
	if err != nil {
		return zero, err
	}
	return decode[T](r), nil
}

// refuseIfReferenced refuses while a volume that is not being flattened
// depends on r (its type, its source); a volume marked flatten only needs
// its parent until the controller has copied the data in, which the
// controller waits for before it deletes the parent's image.
func refuseIfReferenced(a *Admission, r api.Resource, uses func(v api.VolumeSpec, project string) bool) error {
	vols, err := a.Tx.List("volume", "", true)
	if err != nil {
		return err
	}
	for _, v := range vols {
		s := decode[api.VolumeSpec](v)
		if !uses(s, v.Project) {
			continue
		}
		if r.Kind == "volumetype" || !s.Flatten {
			return Conflictf("%s %q is used by volume %s; delete it or flatten it (stratactl volumes flatten) first", r.Kind, r.Name, v.Key())
		}
	}
	return nil
}

// refuseIfCloned refuses to delete an image that volumes are clones of.
func refuseIfCloned(a *Admission, r api.Resource) error {
	return refuseIfReferenced(a, r, func(v api.VolumeSpec, _ string) bool { return v.Image == r.Name })
}

// VolumeFlush finds, in the hosts' reports, the flush of a krbd volume's
// cache that the host mapping it runs before it lets the image go (or the
// last one that failed): that host, and the flush; nil when none.
func VolumeFlush(reports []api.HostReport, project, name string) (string, *api.VolumeFlush) {
	img := storagespec.VolumeImage(project, name)
	for _, rep := range reports {
		for _, c := range rep.VolumeCaches {
			if c.Flush != nil && c.Image[strings.LastIndexByte(c.Image, '/')+1:] == img {
				return rep.Host, c.Flush
			}
		}
	}
	return "", nil
}

// refuseIfAttached refuses to delete a volume that the storage controller
// last saw open (watchers: a qemu or a kernel mapping has it attached), or
// whose host still flushes its cache (it lets the image go after that,
// and the delete can follow), saying how far the flush got.
func refuseIfAttached(a *Admission, r api.Resource) error {
	if host, f := VolumeFlush(a.Tx.Reports(), r.Project, r.Name); f != nil {
		if f.Error != "" {
			return Conflictf("volume %q: host %s could not let it go: %s", r.Name, host, f.Error)
		}
		return Conflictf("volume %q: host %s %s; delete it once the host has let it go", r.Name, host, f.Message)
	}
	st := a.Tx.Status(r.Key())
	if st == nil || len(st.Detail) == 0 {
		return nil
	}
	var d api.VolumeDetail
	if json.Unmarshal(st.Detail, &d) == nil && len(d.Watchers) > 0 {
		return Conflictf("volume %q is attached (open by %v); detach it first", r.Name, d.Watchers)
	}
	return nil
}

// withinQuota refuses a volume that would provision its pool beyond the
// quota the storage controller last read from Ceph (the volume type's
// status). RBD images are thin, so Ceph itself would only refuse writes
// once the data is there; the API refuses at once, naming the size.
func withinQuota(a *Admission, r *api.Resource, s *api.VolumeSpec) error {
	typeName := storagespec.TypeOf(*s)
	ts, err := getGlobal[api.VolumeTypeSpec](a.Tx, "volumetype", typeName, "spec.type")
	if err != nil {
		return err
	}
	st := a.Tx.Status(api.Key{Kind: "volumetype", Name: typeName})
	var pd api.PoolDetail
	if st == nil || len(st.Detail) == 0 || json.Unmarshal(st.Detail, &pd) != nil || pd.QuotaMaxBytes == 0 {
		return nil
	}
	types, err := a.Tx.List("volumetype", "", true)
	if err != nil {
		return err
	}
	poolOf := map[string]string{}
	for _, t := range types {
		poolOf[t.Name] = decode[api.VolumeTypeSpec](t).Pool
	}
	vols, err := a.Tx.List("volume", "", true)
	if err != nil {
		return err
	}
	sum := uint64(s.SizeGiB) * storagespec.GiB
	for _, v := range vols {
		if v.Key() == r.Key() {
			continue
		}
		if vs := decode[api.VolumeSpec](v); poolOf[storagespec.TypeOf(vs)] == ts.Pool {
			sum += uint64(vs.SizeGiB) * storagespec.GiB
		}
	}
	if sum > pd.QuotaMaxBytes {
		return api.Fieldf("spec.size_gib", "%d GiB would provision %d GiB in pool %q, over its quota of %.1f GiB",
			s.SizeGiB, sum/storagespec.GiB, ts.Pool, float64(pd.QuotaMaxBytes)/storagespec.GiB)
	}
	return nil
}
