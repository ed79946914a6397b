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
// cache device, whole or in part: a writethrough volume falls back to the
// uncached device (the origin holds every acknowledged write, so nothing is
// lost), and stays so across restarts; a failed writeback cache is left in
// place — its dirty blocks exist nowhere else — but takes no more writes
// (dm-writecache refuses them once it failed; a cache the agent found
// partly failing is made to, see refuseWrites), and its status
// says the data at risk. A failure is what the target's status says (for
// dm-writecache: a failed metadata commit) or a read error in the stretch
// of the cache's data device this check reads (patrol). The dirty count is
// recorded each time, so the last one survives the agent. Errors of the
// volumes are joined; one failing volume does not stop the others.
// A volume another change holds (a flush, a snapshot, which watch its
// cache themselves) is left for the next check.
func (m *Manager) Check(ctx context.Context) error {
	m.smu.Lock()
	defer m.smu.Unlock()
	recs, err := m.j().all()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range recs {
		if r.Phase != PhaseAttached || r.Mode == "none" || r.Degraded {
			continue
		}
		errs = append(errs, m.withVolume(ctx, r.Volume, opCheck, m.checkOne))
	}
	return errors.Join(errs...)
}

// withVolume runs fn on volume's record under its lock, unless another
// change holds it or the volume is gone or no longer attached.
func (m *Manager) withVolume(ctx context.Context, volume string, op change, fn func(context.Context, *Record) error) error {
	r, unlock, err := m.lockRecord(ctx, volume, op, waitNone)
	if busy := (*busyError)(nil); errors.As(err, &busy) {
		return nil
	}
	if r == nil {
		return err
	}
	defer unlock()
	if r.Phase != PhaseAttached {
		return nil
	}
	return fn(ctx, r)
}

// checkOne is Check of one volume, under its lock.
func (m *Manager) checkOne(ctx context.Context, r *Record) error {
	if r.Mode == "none" || r.Degraded {
		return nil
	}
	st, err := m.Stats(ctx, r.Volume)
	if err != nil {
		return err
	}
	partly := false
	if st.Error == "" && r.CacheError == "" {
		// The target's status stays clean while sectors of its data
		// device fail under it (dm-cache; dm-writecache until it reads
		// or commits there): read a stretch of it.
		if err := m.patrolRead(r); err != nil {
			st.Error, partly = "cache data device: "+err.Error(), true
		}
	}
	// No "flush" message to make dm-writecache commit here: it is the
	// target's write-everything-back command (it sets writeback_all), so
	// every check would empty the cache. A write to a failed data device
	// fails (unacknowledged) and the target's own commit, on the writer's
	// flush or its 1 s autocommit, sets its error.
	if st.Error == "" && r.CacheError == "" {
		if r.LastDirty != st.DirtyBytes() {
			r.LastDirty = st.DirtyBytes()
			return m.j().save(r)
		}
		return nil
	}
	if r.Mode == "writeback" {
		if st.Error == "" {
			st.Error = r.CacheError
		}
		first := r.CacheError == ""
		r.LastDirty = max(r.LastDirty, st.DirtyBytes())
		r.CacheError = st.Error
		m.j().save(r)
		var errs []error
		if partly {
			if err := m.refuseWrites(ctx, r); err != nil {
				errs = append(errs, fmt.Errorf("volume %s: stop the writes to a partly failing cache: %w", r.Volume, err))
			}
		}
		if first {
			m.log().Error("writeback cache failed: the volume takes no writes and its dirty data is at risk",
				"volume", r.Volume, "cache_error", st.Error, "dirty_bytes", r.LastDirty)
		}
		return errors.Join(append(errs, fmt.Errorf("volume %s: writeback cache failed (%s) holding %d dirty bytes", r.Volume, st.Error, r.LastDirty))...)
	}
	// Writethrough: swap the cache for a linear device over the origin
	// shim. The reload waits for in-flight I/O.
	r.Degraded = true
	if err := m.j().save(r); err != nil {
		return err
	}
	if err := m.DM.Reload(ctx, topName(r.Volume), m.table(r, dmcache.DevPath(originName(r.Volume)), r.Sectors)); err != nil {
		return fmt.Errorf("volume %s: drop the failed cache: %w", r.Volume, err)
	}
	for _, n := range []string{dataName(r.Volume), metaName(r.Volume)} {
		if err := m.DM.Remove(ctx, n); err != nil {
			m.log().Warn("remove a failed cache's slice", "volume", r.Volume, "device", n, "err", err)
		}
	}
	m.log().Warn("writethrough cache failed: the volume runs uncached, nothing lost", "volume", r.Volume, "cache_error", st.Error)
	return nil
}

// refuseWrites makes a partly failing writeback cache take no more writes
// while it still serves what it holds: its data device becomes a
// dm-flakey device that fails every write and passes reads (error_writes,
// always down). Every write now fails at the data device, unacknowledged,
// and the target's commit after the first one fails, which puts it in its
// own error state (it refuses writes at once from then on). Its dirty
// blocks stay on the fast device, readable, and the record keeps the
// slice. Nothing here waits on the failing device's I/O: only the data
// device is reloaded (its suspend waits for its own in-flight reads),
// never the writecache target, whose suspend waits for writeback that a
// failed cache may never finish.
func (m *Manager) refuseWrites(ctx context.Context, r *Record) error {
	dev, off := m.Fast.Path(), r.Data.Offset
	if r.Data.Path != "" {
		dev = r.Data.Path
	}
	table := fmt.Sprintf("0 %d flakey %s %d 0 1 1 error_writes", r.Data.Sectors, dev, off)
	return m.DM.Reload(ctx, dataName(r.Volume), table)
}

// patrolRead reads the next PatrolBytes of r's cache data device.
func (m *Manager) patrolRead(r *Record) error {
	size := r.Data.Sectors * 512
	if size <= 0 {
		return nil
	}
	n := m.PatrolBytes
	if n <= 0 {
		n = 16 << 20
	}
	if m.patrol == nil {
		m.patrol = map[string]int64{}
	}
	off := m.patrol[r.Volume]
	if off >= size {
		off = 0
	}
	n = min(n, size-off)
	m.patrol[r.Volume] = off + n
	return m.probe(dmcache.DevPath(dataName(r.Volume)), off, n)
}

// probe reads n bytes at off of a cache's data device.
func (m *Manager) probe(path string, off, n int64) error {
	if m.Probe != nil {
		return m.Probe(path, off, n)
	}
	return readDirect(path, off, n)
}

// readDirect reads n bytes at off with O_DIRECT, past the page cache, in
// 1 MiB page-aligned reads; the error names the first offset that failed.
func readDirect(path string, off, n int64) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	const chunk = 1 << 20
	buf, err := syscall.Mmap(-1, 0, chunk, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return err
	}
	defer syscall.Munmap(buf)
	for at := off; at < off+n; at += chunk {
		b := buf[:min(chunk, off+n-at)]
		if _, err := f.ReadAt(b, at); err != nil {
			// A failed chunk: find its first bad 4 KiB for the message.
			for p := at; p < at+int64(len(b)); p += 4096 {
				if _, err := f.ReadAt(buf[:4096], p); err != nil {
					return fmt.Errorf("read at byte %d: %w", p, err)
				}
			}
			return fmt.Errorf("read at byte %d: %w", at, err)
		}
	}
	return nil
}
