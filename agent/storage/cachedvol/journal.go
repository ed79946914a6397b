package cachedvol

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/strata-infra/strata/agent/storage/dmcache"
	"github.com/strata-infra/strata/agent/storage/krbd"
)

// Phases of a record. A record is written before each step that changes
// the host, so that an agent killed anywhere finds on start what it was
// doing and finishes it.
const (
	PhaseAttaching = "attaching" // mapping and assembling
	PhaseAttached  = "attached"  // in use
	PhaseDetaching = "detaching" // flushing, then tearing down
)

// Slice is a stretch of the fast device, in 512-byte sectors.
type Slice struct {
	Offset  int64 `json:"offset"`
	Sectors int64 `json:"sectors"`
	// Path, when set, is a device of the slice's own (an LV a Carver
	// made), used from Offset; empty: the manager's fast device.
	Path string `json:"path,omitempty"`
}

// Record is what the agent keeps of one volume it attached: enough to find
// the mapping again after an agent restart and to reassemble the cache
// from the fast device after a reboot, dirty blocks included.
type Record struct {
	Volume string         `json:"volume"`
	Image  krbd.Image     `json:"image"`
	Mode   dmcache.Mode   `json:"mode"`
	Params dmcache.Params `json:"params"`
	// Data is the cache's slice; Meta dm-cache's metadata slice.
	Data Slice `json:"data"`
	Meta Slice `json:"meta"`
	// Fresh is set from the slices' allocation until the cache target
	// first runs on them: only a fresh cache may be initialised (its
	// superblock zeroed). A cache that ever ran is only reassembled.
	Fresh bool `json:"fresh,omitempty"`
	// Degraded is set once a failing writethrough cache was dropped: the
	// volume then runs on the origin alone.
	Degraded bool   `json:"degraded,omitempty"`
	Phase    string `json:"phase"`
	// Sectors is the image's size when it was last mapped.
	Sectors int64 `json:"sectors"`
	// Snapshotting is set while a snapshot has the image unmapped under
	// held writes; whoever finds it set maps it again and lets them go.
	Snapshotting bool `json:"snapshotting,omitempty"`
	// CacheError is the failure of a writeback cache's device, as the
	// check found it: the target's error, or a read error of its data
	// device's patrol while the target's status stays clean
	// (dm-writecache fails the writes but keeps a clean status until a
	// metadata commit fails). It stays: the cache takes no more writes.
	CacheError string `json:"cache_error,omitempty"`
	// LastDirty is the last dirty byte count seen, published so the
	// coordinator knows what this host holds.
	LastDirty int64 `json:"last_dirty"`
	// IdleCleaning is set while the cache writes everything back because
	// the volume is idle (CleanIdle); the next I/O turns it off.
	IdleCleaning bool `json:"idle_cleaning,omitempty"`
	// FlushTimeout is the volume type's bound on a flush (0: the
	// manager's): kept here, as the volume may have left the plan by the
	// time it is detached.
	FlushTimeout time.Duration `json:"flush_timeout,omitempty"`
}

// journal keeps one JSON file a volume in dir, each written atomically.
type journal struct{ dir string }

func (j journal) path(volume string) string { return filepath.Join(j.dir, volume+".json") }

func (j journal) save(r *Record) error {
	if err := os.MkdirAll(j.dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := j.path(r.Volume) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, j.path(r.Volume)); err != nil {
		return err
	}
	if d, err := os.Open(j.dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

func (j journal) load(volume string) (*Record, error) {
	b, err := os.ReadFile(j.path(volume))
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("record %s: %w", j.path(volume), err)
	}
	return &r, nil
}

func (j journal) remove(volume string) error {
	err := os.Remove(j.path(volume))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// all returns every record, by volume name.
func (j journal) all() ([]*Record, error) {
	ents, err := os.ReadDir(j.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		r, err := j.load(name)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Volume < out[b].Volume })
	return out, nil
}

// allocate finds room for n sectors on a device of total sectors, beside
// the slices in use (first fit, 1 MiB aligned).
func allocate(total, n int64, used []Slice) (Slice, error) {
	const align = 2048 // 1 MiB in sectors
	n = (n + align - 1) / align * align
	sort.Slice(used, func(a, b int) bool { return used[a].Offset < used[b].Offset })
	at := int64(0)
	for _, u := range used {
		if u.Sectors == 0 {
			continue
		}
		if u.Offset-at >= n {
			break
		}
		if end := (u.Offset + u.Sectors + align - 1) / align * align; end > at {
			at = end
		}
	}
	if at+n > total {
		return Slice{}, fmt.Errorf("the cache device has no free %d MiB (%d MiB in all)", n/2048, total/2048)
	}
	return Slice{Offset: at, Sectors: n}, nil
}
