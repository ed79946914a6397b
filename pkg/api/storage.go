package api

// VolumeTypeSpec is the spec of kind "volumetype" (admin, global): where
// volumes of the type live and how hosts attach them.
type VolumeTypeSpec struct {
	// Pool is the Ceph pool the type's volumes are made in.
	Pool string `json:"pool"`
	// AttachMode is how a host attaches a volume of the type: "librbd"
	// (the default; qemu opens the image itself) or "krbd" (a kernel block
	// device, for the SSD cache).
	AttachMode string `json:"attach_mode,omitempty"`
	// CacheMode is the host SSD cache for krbd volumes: "none" (the
	// default), "writeback" (dm-writecache) or "writethrough" (dm-cache).
	CacheMode string `json:"cache_mode,omitempty"`
	// CacheSizeMiB is each volume's cache on its host's fast device
	// (default 1024).
	CacheSizeMiB int `json:"cache_size_mib,omitempty"`
	// CacheHighWatermark and CacheLowWatermark (percent of the cache in
	// use) start and stop the writeback of a writeback cache (default 50
	// and 45).
	CacheHighWatermark int `json:"cache_high_watermark,omitempty"`
	CacheLowWatermark  int `json:"cache_low_watermark,omitempty"`
	// CacheMaxDirtySeconds is the longest a write stays on the host's
	// cache only, unwritten to Ceph (writeback; default 30): it bounds
	// what a dead host can hold.
	CacheMaxDirtySeconds int `json:"cache_max_dirty_seconds,omitempty"`
	// CacheFlushTimeoutSeconds is the longest the host that maps a volume
	// flushes its writeback cache before it lets the image go (a detach,
	// its instance deleted or moved cold); past it the volume stays
	// mapped with its cache and the status says the dirty count. 0: the
	// host's storage.cache.flush_timeout.
	CacheFlushTimeoutSeconds int `json:"cache_flush_timeout_seconds,omitempty"`
}

// VolumeSpec is the spec of kind "volume" (project): an RBD image. At most
// one source is set; with none the volume starts empty. Image, Snapshot and
// Volume make a copy-on-write clone, never a copy.
type VolumeSpec struct {
	SizeGiB int `json:"size_gib"`
	// Type is a volumetype; empty uses the type named "default".
	Type     string `json:"type,omitempty"`
	Image    string `json:"image,omitempty"`    // an image in Ceph (one with a pool)
	Snapshot string `json:"snapshot,omitempty"` // a volumesnapshot of the project
	Volume   string `json:"volume,omitempty"`   // a volume of the project
	// Flatten asks the storage controller to copy the parent's data into
	// the volume so that it no longer depends on it (the controller also
	// does so on its own past the clone depth limit).
	Flatten bool `json:"flatten,omitempty"`
}

// VolumeSnapshotSpec is the spec of kind "volumesnapshot" (project): a
// read-only point-in-time copy of a volume, which volumes can be cloned
// from.
type VolumeSnapshotSpec struct {
	Volume string `json:"volume"`
}

// VolumeDetail is the Detail of a volume's or image's status, as the
// active storage controller observes it in Ceph.
type VolumeDetail struct {
	Pool       string   `json:"pool"`
	RBDImage   string   `json:"rbd_image"`
	SizeBytes  uint64   `json:"size_bytes"`
	UsedBytes  uint64   `json:"used_bytes"`
	Parent     string   `json:"parent,omitempty"` // pool/image@snap it is a clone of
	Depth      int      `json:"depth"`            // clone depth
	Watchers   []string `json:"watchers,omitempty"`
	LockOwners []string `json:"lock_owners,omitempty"`
	Snapshots  []string `json:"snapshots,omitempty"`
	Controller string   `json:"controller"` // the host that observed it
}

// PoolDetail is the Detail of a volume type's status: its pool's quota as
// the active storage controller reads it from Ceph (`ceph osd pool
// set-quota POOL max_bytes N`). The coordinator refuses a volume create or
// extend that would provision the pool's volumes beyond it.
type PoolDetail struct {
	Pool          string `json:"pool"`
	QuotaMaxBytes uint64 `json:"quota_max_bytes"` // 0: no quota
	Controller    string `json:"controller"`
}
