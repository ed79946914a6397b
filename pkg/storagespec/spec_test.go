package storagespec

import (
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

func TestValidate(t *testing.T) {
	prev := &api.VolumeSpec{SizeGiB: 10, Image: "tiny"}
	for _, tt := range []struct {
		fe    *api.FieldError
		field string
	}{
		{ValidateType(api.VolumeTypeSpec{Pool: ""}), "spec.pool"},
		{ValidateType(api.VolumeTypeSpec{Pool: "v", AttachMode: "nbd"}), "spec.attach_mode"},
		{ValidateType(api.VolumeTypeSpec{Pool: "v", CacheMode: "writeback"}), "spec.cache_mode"},
		{ValidateType(api.VolumeTypeSpec{Pool: "v", AttachMode: "krbd", CacheMode: "wb"}), "spec.cache_mode"},
		{ValidateType(api.VolumeTypeSpec{Pool: "v", AttachMode: "krbd", CacheMode: "writearound"}), "spec.cache_mode"},
		{ValidateType(api.VolumeTypeSpec{Pool: "v", AttachMode: "krbd", CacheSizeMiB: 64}), "spec.cache_size_mib"},
		{ValidateType(api.VolumeTypeSpec{Pool: "v", AttachMode: "krbd", CacheMode: "writeback", CacheSizeMiB: 8}), "spec.cache_size_mib"},
		{ValidateType(api.VolumeTypeSpec{Pool: "v", AttachMode: "krbd", CacheMode: "writethrough", CacheHighWatermark: 60}), "spec.cache_high_watermark"},
		{ValidateType(api.VolumeTypeSpec{Pool: "v", AttachMode: "krbd", CacheMode: "writeback", CacheHighWatermark: 101}), "spec.cache_high_watermark"},
		{ValidateType(api.VolumeTypeSpec{Pool: "v", AttachMode: "krbd", CacheMode: "writeback", CacheLowWatermark: -1}), "spec.cache_low_watermark"},
		{ValidateType(api.VolumeTypeSpec{Pool: "v", AttachMode: "krbd", CacheMode: "writeback", CacheHighWatermark: 30, CacheLowWatermark: 40}), "spec.cache_low_watermark"},
		{ValidateType(api.VolumeTypeSpec{Pool: "v", AttachMode: "krbd", CacheMode: "writeback", CacheMaxDirtySeconds: 7200}), "spec.cache_max_dirty_seconds"},
		{ValidateType(api.VolumeTypeSpec{Pool: "v", AttachMode: "krbd", CacheMode: "writeback", CacheFlushTimeoutSeconds: 2 * 86400}), "spec.cache_flush_timeout_seconds"},
		{ValidateType(api.VolumeTypeSpec{Pool: "v", AttachMode: "krbd", CacheMode: "writeback", CacheFlushTimeoutSeconds: -1}), "spec.cache_flush_timeout_seconds"},
		{ValidateType(api.VolumeTypeSpec{Pool: "v", AttachMode: "krbd", CacheMode: "writethrough", CacheFlushTimeoutSeconds: 60}), "spec.cache_flush_timeout_seconds"},
		{ValidateVolume(api.VolumeSpec{SizeGiB: 0}, nil), "spec.size_gib"},
		{ValidateVolume(api.VolumeSpec{SizeGiB: MaxVolumeGiB + 1}, nil), "spec.size_gib"},
		{ValidateVolume(api.VolumeSpec{SizeGiB: 1, Image: "a", Snapshot: "b"}, nil), "spec.image"},
		{ValidateVolume(api.VolumeSpec{SizeGiB: 9, Image: "tiny"}, prev), "spec.size_gib"},
		{ValidateVolume(api.VolumeSpec{SizeGiB: 10, Image: "other"}, prev), "spec.image"},
		{ValidateVolume(api.VolumeSpec{SizeGiB: 10, Image: "tiny", Type: "gold"}, prev), "spec.type"},
	} {
		if tt.fe == nil || tt.fe.Field != tt.field {
			t.Errorf("got %v, want an error naming %s", tt.fe, tt.field)
		}
	}
	for _, fe := range []*api.FieldError{
		ValidateType(api.VolumeTypeSpec{Pool: "volumes"}),
		ValidateType(api.VolumeTypeSpec{Pool: "ssd.pool-1", AttachMode: "krbd", CacheMode: "writeback"}),
		ValidateType(api.VolumeTypeSpec{Pool: "v", AttachMode: "krbd", CacheMode: "writeback", CacheSizeMiB: 256, CacheHighWatermark: 80, CacheLowWatermark: 60, CacheMaxDirtySeconds: 10}),
		ValidateType(api.VolumeTypeSpec{Pool: "v", AttachMode: "krbd", CacheMode: "writethrough", CacheSizeMiB: 256}),
		ValidateVolume(api.VolumeSpec{SizeGiB: 11, Image: "tiny", Flatten: true}, prev),
	} {
		if fe != nil {
			t.Errorf("valid spec refused: %v", fe)
		}
	}
}

func TestNames(t *testing.T) {
	long := strings.Repeat("x", 63)
	if a, b := VolumeImage("p1", "v"), VolumeImage("p2", "v"); a == b || !strings.HasPrefix(a, "volume-v-") {
		t.Errorf("volume images %q and %q", a, b)
	}
	if n := VolumeImage("p", long); len(n) != len("volume-")+api.MaxHostIDLen {
		t.Errorf("long name: %q", n)
	}
	if SnapshotName("p", "s") == CloneSnapshot("p", "s") {
		t.Error("snapshot and clone snapshot names meet")
	}
}

func TestCacheOf(t *testing.T) {
	for _, c := range []struct {
		in   api.VolumeTypeSpec
		want Cache
	}{
		{api.VolumeTypeSpec{}, Cache{Mode: "none"}},
		{api.VolumeTypeSpec{CacheMode: "writethrough"}, Cache{Mode: "writethrough", SizeBytes: 1 << 30}},
		{api.VolumeTypeSpec{CacheMode: "writeback"}, Cache{Mode: "writeback", SizeBytes: 1 << 30, HighWatermark: 50, LowWatermark: 45, MaxDirty: 30 * time.Second}},
		{api.VolumeTypeSpec{CacheMode: "writeback", CacheSizeMiB: 64, CacheHighWatermark: 20, CacheMaxDirtySeconds: 5},
			Cache{Mode: "writeback", SizeBytes: 64 << 20, HighWatermark: 20, LowWatermark: 20, MaxDirty: 5 * time.Second}},
	} {
		if got := CacheOf(c.in); got != c.want {
			t.Errorf("CacheOf(%+v) = %+v, want %+v", c.in, got, c.want)
		}
	}
}
