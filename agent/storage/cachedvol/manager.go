// Package cachedvol attaches RBD volumes on this host as kernel block
// devices (krbd), each with an optional cache on a local fast device:
// dm-writecache for writeback, dm-cache for writethrough (see package
// dmcache for why). It never loses an acknowledged write: every step is
// recorded before it is made (journal.go), detach and snapshots flush first
// and wait for zero dirty blocks, an agent killed mid-flush finishes the
// flush when it starts again, and a cache that ever held data is only ever
// reassembled from the fast device, never initialised again.
package cachedvol

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/strata-infra/strata/agent/storage/dmcache"
	"github.com/strata-infra/strata/agent/storage/krbd"
)

// Mapper is the part of krbd.Mapper the manager uses.
type Mapper interface {
	Map(ctx context.Context, a krbd.Auth, img krbd.Image, o krbd.Options) (krbd.Device, error)
	Find(img krbd.Image) (krbd.Device, bool, error)
	Unmap(ctx context.Context, d krbd.Device, force bool) error
}

// Device is the host's fast device the caches live on.
type Device interface {
	// Path is the block device (a partition, an LV, a loop device, a RAM
	// disk); Sectors its size in 512-byte sectors.
	Path() string
	Sectors() (int64, error)
	// Zero clears the first bytes of a slice: a cache's superblock.
	Zero(s Slice, bytes int64) error
}

// Manager attaches, flushes and detaches this host's krbd volumes.
type Manager struct {
	DM     dmcache.DM
	Mapper Mapper
	Auth   krbd.Auth
	// Fast is the cache device; nil when the host has none (then only
	// cache mode none is accepted).
	Fast Device
	// StateDir holds the records.
	StateDir string
	Log      *slog.Logger
	// FlushTimeout bounds one flush (default 10 minutes); ProgressEvery
	// is how often a flush logs its progress line (default 5 s).
	FlushTimeout, ProgressEvery time.Duration
	// Exclusive maps every image with the exclusive option.
	Exclusive bool
	// Probe reads n bytes at off of a cache's data device, which Check
	// does to find a failed or partly failing one; nil: a direct read
	// (O_DIRECT, past the page cache).
	Probe func(path string, off, n int64) error
	// PatrolBytes is how much of each cache's data device one Check reads
	// (16 MiB when 0): the next stretch each time, from the start again
	// after the end, so that a bad stretch anywhere is found.
	PatrolBytes int64
	// Changed is called when a flush's progress changes (the agent
	// reports soon); nil: nothing.
	Changed func()
	// FlushRetry is how long a detach whose flush ran out its deadline
	// keeps its error before it flushes again (1 minute when 0): the
	// error stays in the status instead of a new flush hiding it.
	FlushRetry time.Duration

	// lmu guards locks, one per volume with a change under way (see
	// locks.go); status reads take none.
	lmu   sync.Mutex
	locks map[string]*volumeLock
	// alloc: one allocation of the fast device's free space at a time.
	alloc sync.Mutex
	// smu: one Check or CleanIdle sweep at a time (patrol, idle).
	smu sync.Mutex
	// fmu guards flushes: each volume's flush under way, or the last one
	// that failed, read by Statuses beside the flush.
	fmu     sync.Mutex
	flushes map[string]Flush
	// idle is what CleanIdle last saw of each volume's I/O (imu).
	imu  sync.Mutex
	idle map[string]idleSeen
	// patrol is where Check reads each cache's data device next.
	patrol map[string]int64
}

// Volume is what the storage controller asks to attach.
type Volume struct {
	Name   string // unique on the host: the RBD image name
	Image  krbd.Image
	Mode   dmcache.Mode
	Params dmcache.Params
	// CacheBytes is the cache's size (writeback and writethrough).
	CacheBytes int64
	// FlushTimeout bounds the flush before a detach (the volume type's);
	// 0: the manager's FlushTimeout.
	FlushTimeout time.Duration
}

func (m *Manager) log() *slog.Logger {
	if m.Log != nil {
		return m.Log
	}
	return slog.Default()
}

func (m *Manager) j() journal { return journal{dir: m.StateDir} }

// Names of the device-mapper devices of a volume.
func topName(v string) string  { return "strata-" + v }
func dataName(v string) string { return "strata-" + v + "-cdata" }
func metaName(v string) string { return "strata-" + v + "-cmeta" }

// DevicePath is the block device Attach returns for volume: what a
// domain's disk names, known before the volume is attached.
func DevicePath(volume string) string { return dmcache.DevPath(topName(volume)) }

// originName is the shim between the mapping and the top device: a linear
// device that a snapshot points away from the mapping so that the image
// can be unmapped (and its exclusive lock let go) while the top device
// holds the writes.
func originName(v string) string { return "strata-" + v + "-origin" }

// Attach maps v and assembles its cache; it returns the block device the
// domain opens: /dev/mapper/strata-<name>, a cache target or (mode none) a
// linear device over the mapping. Attaching an attached volume returns
// its device again; a volume with a record (an agent restart, a reboot) is
// reassembled from it. It waits for a short change of the volume (a
// check), never for a long one (a flush): that turns it away at once, so
// the compute pass that asks goes on and asks again.
func (m *Manager) Attach(ctx context.Context, v Volume) (string, error) {
	unlock, err := m.lockVolume(ctx, v.Name, opAttach, waitShort)
	if err != nil {
		return "", fmt.Errorf("attach %s: %w", v.Name, err)
	}
	defer unlock()
	if err := v.Params.Validate(); err != nil {
		return "", fmt.Errorf("attach %s: %w", v.Name, err)
	}
	r, err := m.j().load(v.Name)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if r, err = m.newRecord(v); err != nil {
			return "", fmt.Errorf("attach %s: %w", v.Name, err)
		}
	case err != nil:
		return "", err
	case r.Phase == PhaseDetaching:
		return "", fmt.Errorf("attach %s: a detach is under way; it finishes first", v.Name)
	case r.Fresh && r.Data.Path != "" && r.Data.Sectors == 0:
		// Killed while carving its LVs: carve again (by name).
		if c, ok := m.Fast.(Carver); ok {
			if err := m.carve(c, r, v.CacheBytes); err != nil {
				return "", fmt.Errorf("attach %s: %w", v.Name, err)
			}
		}
	}
	// Attached again (a detach called off): a write-back before an
	// unplug that no longer comes is not the volume's status any more.
	defer m.forgetDrain(v.Name)
	if r.FlushTimeout != v.FlushTimeout {
		// The type's bound changed: the next flush keeps the new one.
		r.FlushTimeout = v.FlushTimeout
		if err := m.j().save(r); err != nil {
			return "", err
		}
	}
	return m.assemble(ctx, r)
}

// newRecord allocates the cache's slices and records them, fresh.
func (m *Manager) newRecord(v Volume) (*Record, error) {
	r := &Record{Volume: v.Name, Image: v.Image, Mode: v.Mode, Params: v.Params, Phase: PhaseAttaching, FlushTimeout: v.FlushTimeout}
	if r.Mode == "" {
		r.Mode = dmcache.None
	}
	if r.Mode != dmcache.None {
		if m.Fast == nil {
			return nil, fmt.Errorf("cache mode %s: this host has no cache device (agent config storage.cache.device)", r.Mode)
		}
		if v.CacheBytes < 1<<20 {
			return nil, fmt.Errorf("cache size %d bytes: want at least 1 MiB", v.CacheBytes)
		}
		if c, ok := m.Fast.(Carver); ok {
			return r, m.carve(c, r, v.CacheBytes)
		}
		// Read what the others use and record this one's slices as one step.
		m.alloc.Lock()
		defer m.alloc.Unlock()
		total, err := m.Fast.Sectors()
		if err != nil {
			return nil, err
		}
		recs, err := m.j().all()
		if err != nil {
			return nil, err
		}
		var used []Slice
		for _, o := range recs {
			used = append(used, o.Data, o.Meta)
		}
		if r.Data, err = allocate(total, v.CacheBytes/512, used); err != nil {
			return nil, err
		}
		if r.Mode == dmcache.Writethrough {
			if r.Meta, err = allocate(total, dmcache.CacheMetaBytes(v.CacheBytes)/512, append(used, r.Data)); err != nil {
				return nil, err
			}
		}
		r.Fresh = true
	}
	return r, m.j().save(r)
}

// carve makes r's slices as LVs of their own. The record is saved (fresh)
// before each LV is made, so an agent killed in between finds the LV by
// its name again and a detach drops it.
func (m *Manager) carve(c Carver, r *Record, cacheBytes int64) error {
	ctx := context.Background()
	r.Fresh = true
	r.Data = Slice{Path: m.Fast.Path() + "/" + dataName(r.Volume)}
	if r.Mode == dmcache.Writethrough {
		r.Meta = Slice{Path: m.Fast.Path() + "/" + metaName(r.Volume)}
	}
	if err := m.j().save(r); err != nil {
		return err
	}
	var err error
	if r.Data, err = c.Carve(ctx, dataName(r.Volume), cacheBytes/512); err != nil {
		return err
	}
	if r.Mode == dmcache.Writethrough {
		if r.Meta, err = c.Carve(ctx, metaName(r.Volume), dmcache.CacheMetaBytes(cacheBytes)/512); err != nil {
			return err
		}
	}
	return m.j().save(r)
}

// assemble brings r's mapping and devices up from what exists: it maps the
// image unless mapped, makes the origin shim, the slices and the top
// device unless made, zeroing a superblock only while the record is fresh.
func (m *Manager) assemble(ctx context.Context, r *Record) (string, error) {
	d, err := m.Mapper.Map(ctx, m.Auth, r.Image, krbd.Options{Exclusive: m.Exclusive})
	if err != nil {
		return "", err
	}
	sectors, err := originSectors(d.Path)
	if err != nil {
		return "", err
	}
	top, shim := topName(r.Volume), originName(r.Volume)
	if _, err := m.DM.Status(ctx, shim); errors.Is(err, dmcache.ErrNotFound) {
		if err := m.DM.Create(ctx, shim, dmcache.LinearTable(d.Path, 0, sectors)); err != nil {
			return "", fmt.Errorf("assemble %s: %w", r.Volume, err)
		}
	} else if err != nil {
		return "", err
	} else if r.Snapshotting {
		// An agent killed amid a snapshot: the shim may point nowhere and
		// the writes be held. Point it at the mapping and let them go.
		if err := m.DM.Reload(ctx, shim, dmcache.LinearTable(d.Path, 0, sectors)); err != nil {
			return "", fmt.Errorf("assemble %s: %w", r.Volume, err)
		}
		if err := m.DM.Resume(ctx, top); err != nil && !errors.Is(err, dmcache.ErrNotFound) {
			return "", fmt.Errorf("assemble %s: %w", r.Volume, err)
		}
	}
	changed := r.Snapshotting || r.Sectors != sectors
	r.Snapshotting, r.Sectors = false, sectors
	if _, err := m.DM.Status(ctx, top); err == nil {
		if changed || r.Fresh || r.Phase != PhaseAttached {
			r.Fresh, r.Phase = false, PhaseAttached
			if err := m.j().save(r); err != nil {
				return "", err
			}
		}
		return dmcache.DevPath(top), nil
	} else if !errors.Is(err, dmcache.ErrNotFound) {
		return "", err
	}
	if err := m.slices(ctx, r); err != nil {
		return "", err
	}
	if r.Fresh && r.Mode != dmcache.None {
		// A new cache: clear whatever a former volume left in its slices
		// so the target initialises them.
		if err := m.Fast.Zero(r.Data, 1<<20); err != nil {
			return "", err
		}
		if r.Mode == dmcache.Writethrough {
			if err := m.Fast.Zero(r.Meta, 1<<20); err != nil {
				return "", err
			}
		}
	}
	if err := m.DM.Create(ctx, top, m.table(r, dmcache.DevPath(shim), sectors)); err != nil {
		return "", fmt.Errorf("assemble %s: %w", r.Volume, err)
	}
	r.Fresh, r.Phase, r.IdleCleaning = false, PhaseAttached, false
	if err := m.j().save(r); err != nil {
		return "", err
	}
	m.log().Info("volume assembled", "volume", r.Volume, "mode", r.Mode, "rbd", d.Path)
	return dmcache.DevPath(top), nil
}

// table is the top device's table over origin.
func (m *Manager) table(r *Record, origin string, sectors int64) string {
	switch {
	case r.Degraded || r.Mode == dmcache.None:
		return dmcache.LinearTable(origin, 0, sectors)
	case r.Mode == dmcache.Writeback:
		return dmcache.WritecacheTable(origin, dmcache.DevPath(dataName(r.Volume)), sectors, r.Params)
	default:
		return dmcache.CacheTable(dmcache.DevPath(metaName(r.Volume)), dmcache.DevPath(dataName(r.Volume)), origin, sectors)
	}
}

// slices makes the linear devices over r's slices of the fast device.
func (m *Manager) slices(ctx context.Context, r *Record) error {
	if r.Degraded {
		return nil // its cache failed; the volume runs on the origin
	}
	for _, s := range []struct {
		name  string
		slice Slice
	}{{dataName(r.Volume), r.Data}, {metaName(r.Volume), r.Meta}} {
		if s.slice.Sectors == 0 {
			continue
		}
		if _, err := m.DM.Status(ctx, s.name); err == nil {
			continue
		}
		dev := m.Fast.Path()
		if s.slice.Path != "" {
			dev = s.slice.Path
			if c, ok := m.Fast.(Carver); ok {
				if err := c.Activate(ctx, s.slice); err != nil {
					return err
				}
			}
		}
		if err := m.DM.Create(ctx, s.name, dmcache.LinearTable(dev, s.slice.Offset, s.slice.Sectors)); err != nil {
			return err
		}
	}
	return nil
}

// Stats reads the volume's cache state (Mode none for an uncached one).
func (m *Manager) Stats(ctx context.Context, volume string) (dmcache.Stats, error) {
	line, err := m.DM.Status(ctx, topName(volume))
	if errors.Is(err, dmcache.ErrNotFound) {
		return dmcache.Stats{Mode: dmcache.None}, nil
	}
	if err != nil {
		return dmcache.Stats{}, err
	}
	return dmcache.ParseStatus(line)
}

// Records lists what the host holds.
func (m *Manager) Records() ([]*Record, error) { return m.j().all() }
