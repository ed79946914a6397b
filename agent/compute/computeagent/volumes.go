package computeagent

import (
	"encoding/json"
	"fmt"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// volumeIndex maps the plan's volumes onto RBD images, the way the
// storage controller names them (storagespec).
type volumeIndex struct {
	types map[string]api.VolumeTypeSpec
	vols  map[api.Key]api.VolumeSpec
}

func indexVolumes(h *plan.Host) volumeIndex {
	ix := volumeIndex{types: map[string]api.VolumeTypeSpec{}, vols: map[api.Key]api.VolumeSpec{}}
	for _, r := range h.Kind("volumetype") {
		var ts api.VolumeTypeSpec
		if json.Unmarshal(r.Spec, &ts) == nil {
			ix.types[r.Name] = ts
		}
	}
	for _, r := range h.Kind("volume") {
		var vs api.VolumeSpec
		if json.Unmarshal(r.Spec, &vs) == nil {
			ix.vols[r.Key()] = vs
		}
	}
	return ix
}

// volume is project's volume name as the driver attaches it (boot: as
// the instance's root disk), checked as the coordinator checked it.
func (ix volumeIndex) volume(project, name string, boot bool) (computespec.Volume, error) {
	vs, ok := ix.vols[api.Key{Kind: "volume", Project: project, Name: name}]
	if !ok {
		return computespec.Volume{}, fmt.Errorf("volume %q is not in the plan", name)
	}
	ts, ok := ix.types[storagespec.TypeOf(vs)]
	if !ok {
		return computespec.Volume{}, fmt.Errorf("volume type %q of volume %q is not in the plan", storagespec.TypeOf(vs), name)
	}
	field := "spec.volumes"
	if boot {
		field = "spec.boot_volume"
	}
	if fe := storagespec.CheckInstanceVolume(field, name, storagespec.TypeOf(vs), ts, boot); fe != nil {
		return computespec.Volume{}, fe
	}
	v := computespec.Volume{Pool: ts.Pool, Image: storagespec.VolumeImage(project, name), Serial: name,
		SizeBytes: uint64(vs.SizeGiB) * storagespec.GiB}
	if ts.AttachMode == "krbd" {
		c := storagespec.CacheOf(ts)
		v.KRBD = &computespec.KRBD{CacheMode: c.Mode, CacheBytes: c.SizeBytes,
			HighWatermark: c.HighWatermark, LowWatermark: c.LowWatermark, MaxDirtySeconds: int(c.MaxDirty.Seconds()),
			FlushTimeoutSeconds: int(c.FlushTimeout.Seconds())}
	}
	return v, nil
}
