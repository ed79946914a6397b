package controller

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/rbd"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// volume is one volume of the plan, mapped onto RBD.
type volume struct {
	Key     api.Key
	Epoch   uint64
	Ref     rbd.Ref
	Size    uint64
	Owner   string
	Flatten bool
	// Parent is the snapshot the volume is cloned from; ParentOfVolume,
	// when set, is the volume whose snapshot Parent is (the controller takes
	// that snapshot itself).
	Parent         *rbd.Ref
	ParentOfVolume *api.Key
	// SourceGone says which source left the plan: fine for a flattened
	// volume that exists, an error for one still to be made.
	SourceGone string
	// Err says why the volume cannot be mapped (a type, image or snapshot
	// missing from the plan, or a check failing): reported, never applied.
	Err string
	// KRBD: its type maps it as a kernel block device on its host, maybe
	// behind a cache holding writes Ceph has not seen (krbdHeld).
	KRBD bool
}

// snapshot is one volumesnapshot of the plan.
type snapshot struct {
	Key   api.Key
	Epoch uint64
	Ref   rbd.Ref // with Snap
	Err   string
	KRBD  bool // of a krbd volume
}

// desiredState is everything the controller wants in Ceph.
type desiredState struct {
	Volumes   []volume // sources before their clones
	Snapshots []snapshot
	Pools     []string  // the pools Strata's volumes and images may live in
	Images    []rbd.Ref // the images in Ceph the plan holds
	Types     []volumeType
}

// volumeType is one volumetype of the plan with its pool.
type volumeType struct {
	Key   api.Key
	Epoch uint64
	Pool  string
}

// desired maps the plan's volume types, images, volumes and snapshots. It
// is pure: the same checks as the coordinator's admission, from
// storagespec.
func desired(s *plan.Snapshot) (desiredState, error) {
	var d desiredState
	types := map[string]api.VolumeTypeSpec{}
	for _, r := range s.Kind("volumetype") {
		var ts api.VolumeTypeSpec
		if err := json.Unmarshal(r.Spec, &ts); err != nil {
			return d, fmt.Errorf("volumetype %s: %w", r.Name, err)
		}
		types[r.Name] = ts
		if storagespec.ValidateType(ts) == nil {
			d.Types = append(d.Types, volumeType{Key: r.Key(), Epoch: r.Epoch, Pool: ts.Pool})
			if !slices.Contains(d.Pools, ts.Pool) {
				d.Pools = append(d.Pools, ts.Pool)
			}
		}
	}
	images := map[string]api.ImageSpec{}
	for _, r := range s.Kind("image") {
		var is api.ImageSpec
		if err := json.Unmarshal(r.Spec, &is); err != nil {
			return d, fmt.Errorf("image %s: %w", r.Name, err)
		}
		images[r.Name] = is
		if is.Pool != "" && storagespec.ValidatePool("spec.pool", is.Pool) == nil {
			d.Images = append(d.Images, rbd.Ref{Pool: is.Pool, Image: storagespec.ImageName(r.Name)})
			if !slices.Contains(d.Pools, is.Pool) {
				d.Pools = append(d.Pools, is.Pool)
			}
		}
	}
	sort.Strings(d.Pools)
	specs := map[api.Key]api.VolumeSpec{}
	refs := map[api.Key]rbd.Ref{}
	krbdVol := map[api.Key]bool{}
	for _, r := range s.Kind("volume") {
		var vs api.VolumeSpec
		if err := json.Unmarshal(r.Spec, &vs); err != nil {
			return d, fmt.Errorf("volume %s: %w", r.Key(), err)
		}
		specs[r.Key()] = vs
		if ts, ok := types[storagespec.TypeOf(vs)]; ok {
			refs[r.Key()] = rbd.Ref{Pool: ts.Pool, Image: storagespec.VolumeImage(r.Project, r.Name)}
			krbdVol[r.Key()] = ts.AttachMode == "krbd"
		}
	}
	snaps := map[api.Key]snapshot{}
	for _, r := range s.Kind("volumesnapshot") {
		var ss api.VolumeSnapshotSpec
		if err := json.Unmarshal(r.Spec, &ss); err != nil {
			return d, fmt.Errorf("volumesnapshot %s: %w", r.Key(), err)
		}
		vk := api.Key{Kind: "volume", Project: r.Project, Name: ss.Volume}
		sn := snapshot{Key: r.Key(), Epoch: r.Epoch, KRBD: krbdVol[vk]}
		if ref, ok := refs[vk]; ok {
			sn.Ref = rbd.Ref{Pool: ref.Pool, Image: ref.Image, Snap: storagespec.SnapshotName(r.Project, r.Name)}
		} else {
			sn.Err = fmt.Sprintf("volume %q is not in the plan", ss.Volume)
		}
		snaps[r.Key()] = sn
		d.Snapshots = append(d.Snapshots, sn)
	}
	for _, r := range s.Kind("volume") {
		vs := specs[r.Key()]
		v := volume{Key: r.Key(), Epoch: r.Epoch, Size: uint64(vs.SizeGiB) * storagespec.GiB,
			Owner: storagespec.Owner("volume", r.Project, r.Name), Flatten: vs.Flatten, KRBD: krbdVol[r.Key()]}
		ref, ok := refs[r.Key()]
		switch {
		case !ok:
			v.Err = fmt.Sprintf("volume type %q is not in the plan", storagespec.TypeOf(vs))
		case storagespec.ValidateVolume(vs, nil) != nil:
			v.Err = storagespec.ValidateVolume(vs, nil).Error()
		}
		v.Ref = ref
		switch {
		case v.Err != "":
		case vs.Image != "":
			im, ok := images[vs.Image]
			if !ok || im.Pool == "" {
				v.Err = fmt.Sprintf("image %q is not in Ceph", vs.Image)
				break
			}
			v.Parent = &rbd.Ref{Pool: im.Pool, Image: storagespec.ImageName(vs.Image), Snap: rbd.BaseSnap}
		case vs.Snapshot != "":
			sn, ok := snaps[api.Key{Kind: "volumesnapshot", Project: r.Project, Name: vs.Snapshot}]
			if !ok || sn.Err != "" {
				v.Err = fmt.Sprintf("snapshot %q is not in the plan", vs.Snapshot)
				break
			}
			p := sn.Ref
			v.Parent = &p
		case vs.Volume != "":
			src := api.Key{Kind: "volume", Project: r.Project, Name: vs.Volume}
			sref, ok := refs[src]
			if !ok {
				v.Err = fmt.Sprintf("volume %q is not in the plan", vs.Volume)
				break
			}
			v.Parent = &rbd.Ref{Pool: sref.Pool, Image: sref.Image, Snap: storagespec.CloneSnapshot(r.Project, r.Name)}
			v.ParentOfVolume = &src
		}
		if v.Err != "" && v.Flatten && ok && (vs.Image != "" || vs.Snapshot != "" || vs.Volume != "") {
			// A flattened volume no longer needs its source, which may
			// have been deleted since (the API allows that once flatten is set).
			v.SourceGone, v.Err, v.Parent, v.ParentOfVolume = v.Err, "", nil, nil
		}
		d.Volumes = append(d.Volumes, v)
	}
	d.Volumes = sourcesFirst(d.Volumes, snaps, s)
	return d, nil
}

// sourcesFirst orders volumes so that a volume comes after the volume it
// is cloned from (directly, or through one of its snapshots).
func sourcesFirst(vs []volume, snaps map[api.Key]snapshot, s *plan.Snapshot) []volume {
	byKey := map[api.Key]volume{}
	for _, v := range vs {
		byKey[v.Key] = v
	}
	snapVol := map[rbd.Ref]api.Key{}
	for _, r := range s.Kind("volumesnapshot") {
		var ss api.VolumeSnapshotSpec
		_ = json.Unmarshal(r.Spec, &ss)
		if sn := snaps[r.Key()]; sn.Err == "" {
			snapVol[sn.Ref] = api.Key{Kind: "volume", Project: r.Project, Name: ss.Volume}
		}
	}
	var out []volume
	done := map[api.Key]bool{}
	var visit func(v volume, depth int)
	visit = func(v volume, depth int) {
		if done[v.Key] || depth > len(vs) {
			return
		}
		done[v.Key] = true
		if v.ParentOfVolume != nil {
			if p, ok := byKey[*v.ParentOfVolume]; ok {
				visit(p, depth+1)
			}
		} else if v.Parent != nil {
			if pk, ok := snapVol[*v.Parent]; ok {
				if p, ok := byKey[pk]; ok {
					visit(p, depth+1)
				}
			}
		}
		out = append(out, v)
	}
	for _, v := range vs {
		visit(v, 0)
	}
	return out
}
