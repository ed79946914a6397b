// Package storagespec holds the pure rules of volumes, volume types,
// volume snapshots and images in Ceph that the coordinator checks before a
// commit and the agent's storage controller checks before it touches a
// pool: one copy of each check, so what the API accepts every host can
// apply. It also derives the RBD names, in one place.
package storagespec

import (
	"cmp"
	"fmt"
	"regexp"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// Limits.
const (
	MaxVolumeGiB = 64 << 10 // 64 TiB
	// MaxCloneDepth is the longest chain of clones the controller keeps:
	// a volume cloned from a clone of this depth is flattened in the
	// background once made, so reads never walk more than this many
	// parents.
	MaxCloneDepth = 4
	// DefaultType is the volume type a volume without one gets.
	DefaultType = "default"
	GiB         = 1 << 30
)

var poolRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$`)

// ValidatePool checks a Ceph pool name.
func ValidatePool(field, pool string) *api.FieldError {
	if !poolRE.MatchString(pool) {
		return api.Fieldf(field, "%q is not a pool name (letters, digits, '_', '.', '-'; 1..63)", pool)
	}
	return nil
}

// ValidateType checks a volume type's spec.
func ValidateType(s api.VolumeTypeSpec) *api.FieldError {
	if fe := ValidatePool("spec.pool", s.Pool); fe != nil {
		return fe
	}
	switch s.AttachMode {
	case "", "librbd", "krbd":
	default:
		return api.Fieldf("spec.attach_mode", "%q is not librbd or krbd", s.AttachMode)
	}
	switch s.CacheMode {
	case "", "none":
	case "writeback", "writethrough":
		if s.AttachMode != "krbd" {
			return api.Fieldf("spec.cache_mode", "%q needs attach_mode krbd (the cache sits on a kernel block device)", s.CacheMode)
		}
	case "writearound":
		return api.Fieldf("spec.cache_mode", "writearound: no device-mapper target offers it (dm-cache's passthrough caches nothing); use writethrough")
	default:
		return api.Fieldf("spec.cache_mode", "%q is not none, writeback or writethrough", s.CacheMode)
	}
	return validateCache(s)
}

// Cache defaults and limits of a volume type.
const (
	DefaultCacheSizeMiB       = 1024
	MaxCacheSizeMiB           = 1 << 20 // 1 TiB
	DefaultCacheHighWatermark = 50
	DefaultCacheLowWatermark  = 45
	DefaultCacheMaxDirty      = 30 * time.Second
	MaxCacheMaxDirty          = time.Hour
	MaxCacheFlushTimeout      = 24 * time.Hour
)

func validateCache(s api.VolumeTypeSpec) *api.FieldError {
	cached := s.CacheMode == "writeback" || s.CacheMode == "writethrough"
	if s.CacheSizeMiB != 0 {
		if !cached {
			return api.Fieldf("spec.cache_size_mib", "needs a cache_mode of writeback or writethrough")
		}
		if s.CacheSizeMiB < 16 || s.CacheSizeMiB > MaxCacheSizeMiB {
			return api.Fieldf("spec.cache_size_mib", "%d is outside 16..%d", s.CacheSizeMiB, MaxCacheSizeMiB)
		}
	}
	for _, f := range []struct {
		field string
		v     int
	}{{"spec.cache_high_watermark", s.CacheHighWatermark}, {"spec.cache_low_watermark", s.CacheLowWatermark}, {"spec.cache_max_dirty_seconds", s.CacheMaxDirtySeconds},
		{"spec.cache_flush_timeout_seconds", s.CacheFlushTimeoutSeconds}} {
		if f.v != 0 && s.CacheMode != "writeback" {
			return api.Fieldf(f.field, "applies to cache_mode writeback only")
		}
		if f.v < 0 {
			return api.Fieldf(f.field, "%d is negative", f.v)
		}
	}
	c := CacheOf(s)
	switch {
	case c.HighWatermark > 100:
		return api.Fieldf("spec.cache_high_watermark", "%d is over 100", c.HighWatermark)
	case c.LowWatermark > c.HighWatermark:
		return api.Fieldf("spec.cache_low_watermark", "%d is above the high watermark %d", c.LowWatermark, c.HighWatermark)
	case c.MaxDirty > MaxCacheMaxDirty:
		return api.Fieldf("spec.cache_max_dirty_seconds", "%d is over %d (an hour of writes a dead host would hold)", s.CacheMaxDirtySeconds, int(MaxCacheMaxDirty.Seconds()))
	case c.FlushTimeout > MaxCacheFlushTimeout:
		return api.Fieldf("spec.cache_flush_timeout_seconds", "%d is over %d (a day)", s.CacheFlushTimeoutSeconds, int(MaxCacheFlushTimeout.Seconds()))
	}
	return nil
}

// Cache is a volume type's cache, defaults filled in.
type Cache struct {
	Mode                        string // none, writeback or writethrough
	SizeBytes                   int64
	HighWatermark, LowWatermark int
	MaxDirty                    time.Duration
	// FlushTimeout bounds the flush before the host lets the image go;
	// 0: the host's own (storage.cache.flush_timeout).
	FlushTimeout time.Duration
}

// CacheOf is the cache a volume type gives its volumes.
func CacheOf(s api.VolumeTypeSpec) Cache {
	c := Cache{Mode: s.CacheMode}
	if c.Mode == "" {
		c.Mode = "none"
	}
	if c.Mode == "none" {
		return c
	}
	c.SizeBytes = int64(cmp.Or(s.CacheSizeMiB, DefaultCacheSizeMiB)) << 20
	if c.Mode == "writeback" {
		c.HighWatermark = cmp.Or(s.CacheHighWatermark, DefaultCacheHighWatermark)
		c.LowWatermark = s.CacheLowWatermark
		if c.LowWatermark == 0 {
			c.LowWatermark = min(DefaultCacheLowWatermark, c.HighWatermark)
		}
		c.MaxDirty = cmp.Or(time.Duration(s.CacheMaxDirtySeconds)*time.Second, DefaultCacheMaxDirty)
		c.FlushTimeout = time.Duration(s.CacheFlushTimeoutSeconds) * time.Second
	}
	return c
}

// ValidateVolume checks a volume's spec on its own; prev is the stored
// version for an update. References (type, image, snapshot, volume) are the
// caller's to resolve.
func ValidateVolume(s api.VolumeSpec, prev *api.VolumeSpec) *api.FieldError {
	if s.SizeGiB < 1 || s.SizeGiB > MaxVolumeGiB {
		return api.Fieldf("spec.size_gib", "%d is outside 1..%d", s.SizeGiB, MaxVolumeGiB)
	}
	n := 0
	for _, v := range []string{s.Image, s.Snapshot, s.Volume} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		return api.Fieldf("spec.image", "image, snapshot and volume are alternatives: set at most one")
	}
	if prev == nil {
		return nil
	}
	if s.SizeGiB < prev.SizeGiB {
		return api.Fieldf("spec.size_gib", "%d is below the current %d: a volume never shrinks", s.SizeGiB, prev.SizeGiB)
	}
	for _, f := range []struct{ field, now, was string }{
		{"type", s.Type, prev.Type}, {"image", s.Image, prev.Image},
		{"snapshot", s.Snapshot, prev.Snapshot}, {"volume", s.Volume, prev.Volume},
	} {
		if f.now != f.was {
			return api.Fieldf("spec."+f.field, "cannot change from %q to %q; make a new volume", f.was, f.now)
		}
	}
	if prev.Flatten && !s.Flatten {
		return api.Fieldf("spec.flatten", "cannot be undone once set")
	}
	return nil
}

// TypeOf is the volume type a volume spec uses.
func TypeOf(s api.VolumeSpec) string {
	if s.Type == "" {
		return DefaultType
	}
	return s.Type
}

// VolumeImage is the RBD image name of a project's volume: "volume-" and
// its api.HostID, so that no two volumes of any projects meet in a pool.
func VolumeImage(project, name string) string { return "volume-" + hashed(project, name) }

// SnapshotName is the RBD snapshot name of a volumesnapshot.
func SnapshotName(project, name string) string { return "snap-" + hashed(project, name) }

// CloneSnapshot is the snapshot a volume cloned from another volume is
// made from: one per clone, so deleting the clone frees it.
func CloneSnapshot(project, clone string) string { return "clone-" + hashed(project, clone) }

// ImageName is the RBD image name of an image (kind image, global).
func ImageName(name string) string { return "image-" + name }

// Owner is the value of the owner metadata Strata puts on every RBD image
// it makes; the controller changes and deletes only images it owns.
func Owner(kind, project, name string) string {
	if project == "" {
		return fmt.Sprintf("strata:%s/%s", kind, name)
	}
	return fmt.Sprintf("strata:%s/%s/%s", kind, project, name)
}

// OwnerPrefix starts every owner value.
const OwnerPrefix = "strata:"

func hashed(project, name string) string { return api.HostID(project, name) }

// BackendPrefix starts the storage backend a host announces per Ceph
// pool it is configured for.
const BackendPrefix = "rbd:"

// Backend is the storage backend "rbd:<pool>": a host that announces it
// can open the pool's images (the scheduler places an instance whose
// disks live there only on such hosts).
func Backend(pool string) string { return BackendPrefix + pool }

// CheckInstanceVolume is what an instance may do with a volume of type ts
// (named typeName): attach a librbd or a krbd volume (a kernel block
// device on its host, cached or not), boot only from a librbd one — a
// krbd root would have to be mapped and its cache assembled before the
// domain is even defined, and moved with it on a live migration, which
// hosts do not do. The coordinator runs it at admission and the agent
// before it attaches, so what the API accepts every host can apply.
func CheckInstanceVolume(field, volume, typeName string, ts api.VolumeTypeSpec, boot bool) *api.FieldError {
	if fe := ValidateType(ts); fe != nil {
		return api.Fieldf(field, "volume %q: type %q: %s: %s", volume, typeName, fe.Field, fe.Message)
	}
	if boot && ts.AttachMode == "krbd" {
		return api.Fieldf(field, "volume %q has type %q (attach_mode krbd): instances boot only from librbd volumes; attach it in spec.volumes", volume, typeName)
	}
	return nil
}

// CheckLiveMigration refuses to move an instance live while it has a krbd
// volume attached: the volume is a block device of the source host (with
// its cache's dirty blocks), which the destination cannot open until the
// source has flushed and unmapped it, so the guest cannot keep running
// across the move. A cold move waits for that (the destination's claim
// is refused until then). The host checks the same before it starts.
func CheckLiveMigration(field, volume string, krbd bool) *api.FieldError {
	if krbd {
		return api.Fieldf(field, "volume %q is attached through krbd (a block device of this host, with its cache): a live migration cannot take it along; stop the instance and migrate it cold, or detach the volume first", volume)
	}
	return nil
}
