package computeagent

import (
	"strings"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
)

// TestKRBDVolumeFromPlan: a volume of a krbd type reaches the driver with
// its type's cache (defaults filled in) to be mapped as a block device; a
// librbd one without; and the host refuses what the coordinator refuses —
// booting from a krbd volume — with the same message.
func TestKRBDVolumeFromPlan(t *testing.T) {
	ix := volumeIndex{
		types: map[string]api.VolumeTypeSpec{
			"default": {Pool: "volumes"},
			"cached":  {Pool: "fast", AttachMode: "krbd", CacheMode: "writeback", CacheSizeMiB: 64},
			"plain":   {Pool: "fast", AttachMode: "krbd"},
		},
		vols: map[api.Key]api.VolumeSpec{
			{Kind: "volume", Project: "p", Name: "c"}: {SizeGiB: 1, Type: "cached"},
			{Kind: "volume", Project: "p", Name: "n"}: {SizeGiB: 1, Type: "plain"},
			{Kind: "volume", Project: "p", Name: "l"}: {SizeGiB: 1},
		},
	}
	c, err := ix.volume("p", "c", false)
	if err != nil {
		t.Fatal(err)
	}
	want := computespec.KRBD{CacheMode: "writeback", CacheBytes: 64 << 20, HighWatermark: 50, LowWatermark: 45, MaxDirtySeconds: 30}
	if c.KRBD == nil || *c.KRBD != want || c.Pool != "fast" || c.Serial != "c" {
		t.Fatalf("cached krbd volume %+v (krbd %+v)", c, c.KRBD)
	}
	if n, err := ix.volume("p", "n", false); err != nil || n.KRBD == nil || n.KRBD.CacheMode != "none" {
		t.Fatalf("uncached krbd volume %+v: %v", n, err)
	}
	if l, err := ix.volume("p", "l", true); err != nil || l.KRBD != nil {
		t.Fatalf("librbd boot volume %+v: %v", l, err)
	}
	_, err = ix.volume("p", "c", true)
	if err == nil || !strings.Contains(err.Error(), "spec.boot_volume") || !strings.Contains(err.Error(), "boot only from librbd") {
		t.Fatalf("booting from a krbd volume: %v", err)
	}
}
