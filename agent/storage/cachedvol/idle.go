package cachedvol

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/strata-infra/strata/agent/storage/dmcache"
)

// idleSeen is a volume's request count when it last changed.
type idleSeen struct {
	requests int64
	since    time.Time
}

// CleanIdle is FlashCache's idle-time cleaning on dm-writecache: a
// writeback volume that has seen no request for idleAfter while it holds
// dirty blocks is switched to the cleaner mode (a target message), which
// writes every dirty block back to Ceph — so what a lost host would hold
// shrinks to nothing while its volumes rest, beyond what the watermarks
// and the maximum age do. The first request afterwards (seen at the next
// call) reloads the volume's own table, which turns caching back on: in
// cleaner mode new writes go around the cache, so a busy volume must not
// stay in it. A reload keeps the cache (dm-writecache commits its
// metadata on suspend and reads it back on resume). The agent calls it
// from its check loop with now; errors of the volumes are joined.
func (m *Manager) CleanIdle(ctx context.Context, now time.Time, idleAfter time.Duration) error {
	m.smu.Lock()
	defer m.smu.Unlock()
	recs, err := m.j().all()
	if err != nil {
		return err
	}
	var errs []error
	seen := map[string]bool{}
	for _, r := range recs {
		if !idleCleanable(r) {
			continue
		}
		seen[r.Volume] = true
		errs = append(errs, m.withVolume(ctx, r.Volume, opCheck, func(ctx context.Context, r *Record) error {
			return m.cleanIfIdle(ctx, r, now, idleAfter)
		}))
	}
	m.imu.Lock()
	for v := range m.idle {
		if !seen[v] {
			delete(m.idle, v)
		}
	}
	m.imu.Unlock()
	return errors.Join(errs...)
}

func idleCleanable(r *Record) bool {
	return r.Phase == PhaseAttached && r.Mode == dmcache.Writeback && !r.Degraded && r.CacheError == "" && !r.Snapshotting
}

// cleanIfIdle is CleanIdle of one volume, under its lock.
func (m *Manager) cleanIfIdle(ctx context.Context, r *Record, now time.Time, idleAfter time.Duration) error {
	if !idleCleanable(r) {
		return nil
	}
	st, err := m.Stats(ctx, r.Volume)
	if err != nil || st.Mode != dmcache.Writeback || st.Error != "" {
		return nil // Check reports it
	}
	n := st.Reads + st.Writes
	m.imu.Lock()
	if m.idle == nil {
		m.idle = map[string]idleSeen{}
	}
	last, ok := m.idle[r.Volume]
	moved := !ok || n != last.requests
	if moved {
		m.idle[r.Volume] = idleSeen{requests: n, since: now}
	}
	m.imu.Unlock()
	if moved {
		if ok && r.IdleCleaning {
			return m.busyAgain(ctx, r)
		}
		return nil
	}
	if r.IdleCleaning || st.Dirty == 0 || now.Sub(last.since) < idleAfter {
		return nil
	}
	r.IdleCleaning = true
	if err := m.j().save(r); err != nil {
		return err
	}
	if err := m.DM.Message(ctx, topName(r.Volume), "cleaner"); err != nil {
		return fmt.Errorf("volume %s: idle cleaning: %w", r.Volume, err)
	}
	m.log().Info("volume idle: writing its cache back", "volume", r.Volume,
		"idle", now.Sub(last.since).Round(time.Second), "dirty_bytes", st.DirtyBytes())
	return nil
}

// busyAgain turns caching back on for a volume that was being cleaned.
func (m *Manager) busyAgain(ctx context.Context, r *Record) error {
	if err := m.DM.Reload(ctx, topName(r.Volume), m.table(r, dmcache.DevPath(originName(r.Volume)), r.Sectors)); err != nil {
		return fmt.Errorf("volume %s: end idle cleaning: %w", r.Volume, err)
	}
	// The reload starts the target's counters again from zero.
	m.imu.Lock()
	delete(m.idle, r.Volume)
	m.imu.Unlock()
	m.forgetDrain(r.Volume)
	r.IdleCleaning = false
	m.log().Info("volume busy again: caching its writes", "volume", r.Volume)
	return m.j().save(r)
}
