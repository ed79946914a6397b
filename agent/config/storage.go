package config

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// Storage configures how this host reaches Ceph and whether it may run the
// storage controller (pool operations; one host active at a time).
type Storage struct {
	// Controller lets this host run the storage controller.
	Controller bool `json:"controller"`
	// Ceph is how the host reaches the cluster: nothing is read from
	// /etc/ceph, so what is used is what is here.
	Ceph Ceph `json:"ceph"`
	// ImagesPool holds the images (stratactl images import);
	// VolumesPool is where the default volume type lives and holds the
	// controller lease.
	ImagesPool  string `json:"images_pool"`
	VolumesPool string `json:"volumes_pool"`
	// Pools are further pools of volume types this host's instances may
	// open (the cephx user must reach them); the host announces each,
	// with the two above, to the scheduler.
	Pools []string `json:"pools,omitempty"`
	// LeaseTTL is how long the controller lease outlives a dead holder.
	LeaseTTL time.Duration `json:"lease_ttl"`
	// Cache is the host's fast device for the caches of krbd volumes.
	Cache Cache `json:"cache"`
}

// vgNameRE is what LVM takes as a volume group's name.
var vgNameRE = regexp.MustCompile(`^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,126}$`)

// Cache is where this host keeps the caches of its krbd volumes.
type Cache struct {
	// Device is a block device (a partition, an LVM logical volume, a
	// RAM disk in tests) the caches are cut from, a slice per volume;
	// empty: no cache here, krbd volumes with a cache mode are refused.
	// Its contents belong to Strata: a cache that holds dirty data is
	// reassembled from it after a reboot.
	Device string `json:"device"`
	// VolumeGroup is an LVM volume group to carve the caches from
	// instead, a logical volume per cache (strata-<image>-cdata); the
	// group may hold other LVs, which are never touched.
	VolumeGroup string `json:"volume_group,omitempty"`
	// FlushTimeout bounds the flush before a detach.
	FlushTimeout time.Duration `json:"flush_timeout"`
	// IdleCleanAfter is how long a writeback volume goes without a
	// request before its cache writes everything back (0: never).
	IdleCleanAfter time.Duration `json:"idle_clean_after"`
}

// Ceph is one host's Ceph client configuration.
type Ceph struct {
	// MonHost is Ceph's "mon host" value: the monitors' addresses.
	MonHost string `json:"mon_host"`
	// User is the cephx id without "client." (e.g. strata).
	User string `json:"user"`
	// Keyring is the user's keyring file (mode 0600).
	Keyring string `json:"keyring"`
	// Timeout bounds each monitor and OSD operation.
	Timeout time.Duration `json:"timeout"`
}

// DefaultStorage is the storage section's defaults: no Ceph.
func DefaultStorage() Storage {
	return Storage{
		Ceph:       Ceph{User: "strata", Keyring: "/etc/ceph/ceph.client.strata.keyring", Timeout: 30 * time.Second},
		ImagesPool: "images", VolumesPool: "volumes", LeaseTTL: 15 * time.Second,
		Cache: Cache{FlushTimeout: 10 * time.Minute, IdleCleanAfter: 30 * time.Second},
	}
}

// Enabled reports whether the host is configured for Ceph at all.
func (s Storage) Enabled() bool { return s.Ceph.MonHost != "" }

func (s *Storage) bindFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&s.Controller, "storage-controller", s.Controller, "run the storage controller (pool operations; one host active at a time)")
	fs.StringVar(&s.Ceph.MonHost, "ceph-mon-host", s.Ceph.MonHost, "Ceph monitor addresses (mon host syntax); empty: no Ceph on this host")
	fs.StringVar(&s.Ceph.User, "ceph-user", s.Ceph.User, "cephx user id, without \"client.\"")
	fs.StringVar(&s.Ceph.Keyring, "ceph-keyring", s.Ceph.Keyring, "keyring file of the cephx user")
	fs.StringVar(&s.ImagesPool, "images-pool", s.ImagesPool, "Ceph pool of the images")
	fs.StringVar(&s.VolumesPool, "volumes-pool", s.VolumesPool, "Ceph pool of the default volume type and the controller lease")
	fs.StringSliceVar(&s.Pools, "ceph-pools", s.Pools, "further Ceph pools (of other volume types) this host's instances may open")
	fs.StringVar(&s.Cache.Device, "cache-device", s.Cache.Device, "block device the caches of krbd volumes are cut from (empty: none)")
	fs.StringVar(&s.Cache.VolumeGroup, "cache-volume-group", s.Cache.VolumeGroup, "LVM volume group the caches of krbd volumes are carved from, an LV each (instead of --cache-device)")
}

// Backends are the storage backends the host announces for the
// scheduler: "rbd:<pool>" for each pool it is configured for, sorted;
// none without Ceph.
func (s Storage) Backends() []string {
	if !s.Enabled() {
		return nil
	}
	var out []string
	for _, p := range append([]string{s.ImagesPool, s.VolumesPool}, s.Pools...) {
		if b := storagespec.Backend(p); !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	slices.Sort(out)
	return out
}

func (s *Storage) validate() error {
	if !s.Enabled() {
		if s.Controller {
			return api.Fieldf("storage.ceph.mon_host", "must be set to run the storage controller")
		}
		return nil
	}
	switch {
	case s.Ceph.User == "" || strings.HasPrefix(s.Ceph.User, "client."):
		return api.Fieldf("storage.ceph.user", "%q: want the cephx id without \"client.\"", s.Ceph.User)
	case !strings.HasPrefix(s.Ceph.Keyring, "/"):
		return api.Fieldf("storage.ceph.keyring", "%q is not an absolute path", s.Ceph.Keyring)
	case s.ImagesPool == "":
		return api.Fieldf("storage.images_pool", "must be set")
	case s.VolumesPool == "":
		return api.Fieldf("storage.volumes_pool", "must be set")
	case s.LeaseTTL < 3*time.Second:
		return api.Fieldf("storage.lease_ttl", "%s is below 3s", s.LeaseTTL)
	case s.Ceph.Timeout < time.Second:
		return api.Fieldf("storage.ceph.timeout", "%s is below 1s", s.Ceph.Timeout)
	case s.Cache.Device != "" && !strings.HasPrefix(s.Cache.Device, "/dev/"):
		return api.Fieldf("storage.cache.device", "%q is not a block device under /dev", s.Cache.Device)
	case s.Cache.VolumeGroup != "" && s.Cache.Device != "":
		return api.Fieldf("storage.cache.volume_group", "set either storage.cache.device or a volume group, not both")
	case s.Cache.VolumeGroup != "" && !vgNameRE.MatchString(s.Cache.VolumeGroup):
		return api.Fieldf("storage.cache.volume_group", "%q is not an LVM volume group name", s.Cache.VolumeGroup)
	case s.Cache.IdleCleanAfter != 0 && s.Cache.IdleCleanAfter < time.Second:
		return api.Fieldf("storage.cache.idle_clean_after", "%s is below 1s (0 turns idle cleaning off)", s.Cache.IdleCleanAfter)
	case s.Cache.FlushTimeout < time.Second:
		return api.Fieldf("storage.cache.flush_timeout", "%s is below 1s", s.Cache.FlushTimeout)
	}
	for i, p := range append([]string{s.ImagesPool, s.VolumesPool}, s.Pools...) {
		field := "storage.pools[" + strconv.Itoa(i-2) + "]"
		switch i {
		case 0:
			field = "storage.images_pool"
		case 1:
			field = "storage.volumes_pool"
		}
		if fe := storagespec.ValidatePool(field, p); fe != nil {
			return fe
		}
	}
	return nil
}
