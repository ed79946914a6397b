package cachedvol

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/strata-infra/strata/agent/storage/dmcache"
)

// Check looks at every attached volume's cache and handles a failing
// cache device: a writethrough volume falls back to the uncached device
// (the origin holds every acknowledged write, so nothing is lost), and
// stays so across restarts; a failed writeback cache is left in place —
// dm-writecache refuses writes once it failed, and its dirty blocks exist
// nowhere else — and its status says the data at risk. The dirty count is
// recorded each time, so the last one survives the agent. Errors of the
// volumes are joined; one failing volume does not stop the others.
func (m *Manager) Check(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	recs, err := m.j().all()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range recs {
		if r.Phase != PhaseAttached || r.Mode == "none" || r.Degraded {
			continue
		}
		st, err := m.Stats(ctx, r.Volume)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Error == "" {
			// dm-cache keeps a clean status while its data device fails
			// under it (only its metadata's failure shows): read the
			// data device itself.
			if err := m.probe(dmcache.DevPath(dataName(r.Volume))); err != nil {
				st.Error = "cache data device: " + err.Error()
			}
		}
		if st.Error == "" && r.Mode == "writeback" {
			// dm-writecache fails writes to a failed device one by one and
			// says so in its status only once a metadata commit fails: a
			// flush commits now, and its failure is the failure.
			if err := m.DM.Message(ctx, topName(r.Volume), "flush"); err != nil {
				st.Error = "flush failed: " + err.Error()
			}
		}
		if st.Error == "" {
			if r.LastDirty != st.DirtyBytes() {
				r.LastDirty = st.DirtyBytes()
				errs = append(errs, m.j().save(r))
			}
			continue
		}
		if r.Mode == "writeback" {
			r.LastDirty = max(r.LastDirty, st.DirtyBytes())
			r.CacheError = st.Error
			m.j().save(r)
			m.log().Error("writeback cache failed: the volume takes no writes and its dirty data is at risk",
				"volume", r.Volume, "cache_error", st.Error, "dirty_bytes", r.LastDirty)
			errs = append(errs, fmt.Errorf("volume %s: writeback cache failed (%s) holding %d dirty bytes", r.Volume, st.Error, r.LastDirty))
			continue
		}
		// Writethrough: swap the cache for a linear device over the origin
		// shim. The reload waits for in-flight I/O.
		r.Degraded = true
		if err := m.j().save(r); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := m.DM.Reload(ctx, topName(r.Volume), m.table(r, dmcache.DevPath(originName(r.Volume)), r.Sectors)); err != nil {
			errs = append(errs, fmt.Errorf("volume %s: drop the failed cache: %w", r.Volume, err))
			continue
		}
		for _, n := range []string{dataName(r.Volume), metaName(r.Volume)} {
			if err := m.DM.Remove(ctx, n); err != nil {
				m.log().Warn("remove a failed cache's slice", "volume", r.Volume, "device", n, "err", err)
			}
		}
		m.log().Warn("writethrough cache failed: the volume runs uncached, nothing lost", "volume", r.Volume, "cache_error", st.Error)
	}
	return errors.Join(errs...)
}

// probe reads the first block of a cache's data device.
func (m *Manager) probe(path string) error {
	if m.Probe != nil {
		return m.Probe(path)
	}
	return readDirect(path)
}

// readDirect reads 4 KiB at offset 0 with O_DIRECT, past the page cache,
// into a page-aligned buffer.
func readDirect(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return err
	}
	defer syscall.Munmap(buf)
	_, err = f.ReadAt(buf, 0) // a *PathError: "read <path>: <why>"
	return err
}
