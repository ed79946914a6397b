package cachedvol

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/strata-infra/strata/agent/storage/dmcache"
)

// Detach flushes the volume's cache to the origin (waiting for zero dirty
// blocks, with a progress line, up to FlushTimeout), removes the cache and
// unmaps the image. The caller detaches only once nothing writes (the
// domain is gone). A failed or interrupted detach is finished by the next
// Detach or by Recover; the volume's record stays until the image is
// unmapped. Detaching a volume without a record succeeds. It holds the
// volume's own lock only, so the flush holds up no other volume; it waits
// for a change under way on the volume (a snapshot) to end first.
func (m *Manager) Detach(ctx context.Context, volume string) error {
	r, unlock, err := m.lockRecord(ctx, volume, opDetach, waitAll)
	if r == nil {
		return err
	}
	defer unlock()
	if f, ok := m.flushOf(volume); ok && !f.BeforeUnplug && f.Error != "" && time.Since(f.Ended) < m.flushRetry() {
		// Keep the failure in the status a while: the cache goes on
		// writing back (cleaner), and a new flush would hide the error.
		return errors.New(f.Error)
	}
	return m.detach(ctx, r)
}

// Flush is a volume's flush before its detach: under way, or the last one
// that failed (Error set; the volume stays mapped with its cache). Dirty
// blocks are left of First when it began. BeforeUnplug marks the
// write-back while the domain still has the disk (DrainForDetach).
type Flush struct {
	BeforeUnplug bool      `json:"before_unplug,omitempty"`
	Dirty        int64     `json:"dirty_blocks"`
	First        int64     `json:"first_blocks"`
	Started      time.Time `json:"started"`
	Deadline     time.Time `json:"deadline"`
	Ended        time.Time `json:"ended,omitzero"`
	Error        string    `json:"error,omitempty"`
}

// Message is the flush's progress line, or its failure.
func (f Flush) Message() string {
	if f.Error != "" {
		return f.Error
	}
	if f.BeforeUnplug {
		return fmt.Sprintf("writes the volume's cache back before the disk is unplugged (new writes go straight to Ceph): %d dirty blocks left (%d when it began) after %s, deadline %s",
			f.Dirty, f.First, time.Since(f.Started).Round(time.Second), f.Deadline.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("flushes the volume's cache before it lets the image go: %d dirty blocks left (%d when it began) after %s, deadline %s",
		f.Dirty, f.First, time.Since(f.Started).Round(time.Second), f.Deadline.UTC().Format(time.RFC3339))
}

// DrainForDetach writes a writeback volume's cache back while its domain
// still has the disk, before the unplug: the cleaner mode, in which new
// writes go straight to the origin, until no block is dirty or the count
// stops falling (what is left is written again and again, and the flush
// after the unplug takes it), with its progress in the volume's status, up
// to the flush deadline. So the flush after the unplug has next to nothing
// left, and a write-back that cannot finish (Ceph unreachable) fails here,
// with the disk still the domain's, instead of leaving a volume no domain
// has mapped on this host with dirty blocks. A failure is returned again
// until FlushRetry is up. The volume is marked as idle cleaning, so that
// if the detach is called off its next request turns caching on again
// (CleanIdle). A volume without a writeback cache has nothing to drain.
func (m *Manager) DrainForDetach(ctx context.Context, volume string) error {
	r, unlock, err := m.lockRecord(ctx, volume, opDrain, waitAll)
	if r == nil {
		return err
	}
	defer unlock()
	if r.Phase != PhaseAttached {
		return nil
	}
	if f, ok := m.flushOf(volume); ok && f.Error != "" && time.Since(f.Ended) < m.flushRetry() {
		return errors.New(f.Error)
	}
	st, err := m.Stats(ctx, volume)
	if err != nil || st.Mode != dmcache.Writeback {
		return err
	}
	timeout, _ := m.flushBounds(r)
	start := time.Now()
	f := &Flush{BeforeUnplug: true, Dirty: st.Dirty, First: st.Dirty, Started: start, Deadline: start.Add(timeout)}
	if st.Error == "" {
		st.Error = r.CacheError
	}
	if st.Error == "" {
		m.noteFlush(volume, f)
		if !r.IdleCleaning {
			r.IdleCleaning = true
			if err := m.j().save(r); err != nil {
				return err
			}
		}
		// A stall is taken as done only with a small tail left: one
		// from the start is a writeback that cannot reach Ceph.
		tail := max(st.Dirty/100, 256)
		err = m.writeBack(ctx, r, st.Dirty, tail, "before its unplug", func(p Progress) {
			f.Dirty = p.Dirty
			m.noteFlush(volume, f)
		})
	} else {
		err = fmt.Errorf("the cache failed (%s) with %d dirty bytes: they are at risk", st.Error, st.DirtyBytes())
	}
	if err != nil {
		f.Error, f.Ended = fmt.Sprintf("detach %s: write-back before the unplug: %v; the disk stays with its domain and nothing is dropped", volume, err), time.Now()
		m.noteFlush(volume, f)
		return errors.New(f.Error)
	}
	m.log().Info("volume cache written back before its unplug", "volume", volume, "blocks", f.First, "left", f.Dirty,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (m *Manager) flushOf(volume string) (Flush, bool) {
	m.fmu.Lock()
	defer m.fmu.Unlock()
	f, ok := m.flushes[volume]
	return f, ok
}

// noteFlush records a volume's flush (nil: it finished, or never began)
// and tells the agent.
func (m *Manager) noteFlush(volume string, f *Flush) {
	m.fmu.Lock()
	if m.flushes == nil {
		m.flushes = map[string]Flush{}
	}
	if f == nil {
		delete(m.flushes, volume)
	} else {
		m.flushes[volume] = *f
	}
	m.fmu.Unlock()
	if m.Changed != nil {
		m.Changed()
	}
}

// forgetDrain drops the volume's write-back before an unplug, if that is
// what its flush entry is.
func (m *Manager) forgetDrain(volume string) {
	if f, ok := m.flushOf(volume); ok && f.BeforeUnplug {
		m.noteFlush(volume, nil)
	}
}

func (m *Manager) flushRetry() time.Duration {
	if m.FlushRetry > 0 {
		return m.FlushRetry
	}
	return time.Minute
}

func (m *Manager) detach(ctx context.Context, r *Record) error {
	if r.Phase != PhaseDetaching {
		// Only once nothing writes: a domain that has the disk (an unplug
		// the guest has not acknowledged yet) keeps the volume as it is.
		n, err := m.DM.OpenCount(ctx, topName(r.Volume))
		if err != nil && !errors.Is(err, dmcache.ErrNotFound) {
			return fmt.Errorf("detach %s: %w", r.Volume, err)
		}
		if n > 0 {
			return fmt.Errorf("detach %s: %s is still open (%d): its domain has not let the disk go; the detach starts once it has", r.Volume, DevicePath(r.Volume), n)
		}
		r.Phase = PhaseDetaching
		if err := m.j().save(r); err != nil {
			return err
		}
	}
	if r.Mode != dmcache.None || r.Snapshotting {
		// After a reboot the cache is down with its dirty blocks: bring it
		// up to write them back.
		if _, err := m.DM.Status(ctx, topName(r.Volume)); errors.Is(err, dmcache.ErrNotFound) || r.Snapshotting {
			if _, err := m.assembleForFlush(ctx, r); err != nil {
				return fmt.Errorf("detach %s: reassemble to flush: %w", r.Volume, err)
			}
		}
		if err := m.flush(ctx, r); err != nil {
			return fmt.Errorf("detach %s: %w", r.Volume, err)
		}
	}
	for _, n := range []string{topName(r.Volume), dataName(r.Volume), metaName(r.Volume), originName(r.Volume)} {
		if err := m.DM.Remove(ctx, n); err != nil {
			return fmt.Errorf("detach %s: %w", r.Volume, err)
		}
	}
	if c, ok := m.Fast.(Carver); ok {
		// The cache is written back and its devices gone: its LVs go too.
		for _, s := range []Slice{r.Data, r.Meta} {
			if s.Path == "" {
				continue
			}
			if err := c.Drop(ctx, s); err != nil {
				return fmt.Errorf("detach %s: %w", r.Volume, err)
			}
		}
	}
	d, ok, err := m.Mapper.Find(r.Image)
	if err != nil {
		return err
	}
	if ok {
		// Nothing above the device writes any more (the cache is removed
		// and the domain gone): a device still busy at the deadline is
		// held by a reader at most, so force is safe.
		uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := m.Mapper.Unmap(uctx, d, true)
		cancel()
		if err != nil {
			return err
		}
	}
	m.log().Info("volume detached", "volume", r.Volume)
	return m.j().remove(r.Volume)
}

// assembleForFlush reassembles a detaching volume's cache; it never
// initialises one.
func (m *Manager) assembleForFlush(ctx context.Context, r *Record) (string, error) {
	if r.Fresh {
		// Never ran: nothing to flush, and nothing to reassemble.
		return "", nil
	}
	phase := r.Phase
	p, err := m.assemble(ctx, r)
	r.Phase = phase
	if serr := m.j().save(r); err == nil {
		err = serr
	}
	return p, err
}

// flush writes every dirty block back and waits until none is left.
func (m *Manager) flush(ctx context.Context, r *Record) error {
	st, err := m.Stats(ctx, r.Volume)
	if err != nil {
		return err
	}
	if st.Mode != dmcache.Writeback {
		return nil // writethrough, degraded or never assembled: the origin has it all
	}
	if st.Error == "" {
		st.Error = r.CacheError
	}
	timeout, every := m.flushBounds(r)
	start := time.Now()
	f := &Flush{Dirty: st.Dirty, First: st.Dirty, Started: start, Deadline: start.Add(timeout)}
	// fail records why the flush stopped, with what is left, in the
	// status: the volume stays mapped with its cache.
	fail := func(err error) error {
		err = fmt.Errorf("%w; %d dirty blocks left (%d when the flush began): the volume stays mapped with its cache on this host and nothing is dropped",
			err, f.Dirty, f.First)
		f.Error, f.Ended = fmt.Sprintf("detach %s: %v", r.Volume, err), time.Now()
		m.noteFlush(r.Volume, f)
		return err
	}
	if st.Error != "" {
		return fail(fmt.Errorf("flush: the cache failed (%s) with %d dirty bytes: they are at risk; the record stays", st.Error, st.DirtyBytes()))
	}
	m.noteFlush(r.Volume, f)
	// cleaner: stop caching new writes and write everything back.
	if err := m.DM.Message(ctx, topName(r.Volume), "cleaner"); err != nil {
		return fail(err)
	}
	lastLog := time.Time{}
	for {
		st, err = m.Stats(ctx, r.Volume)
		if err != nil {
			return fail(err)
		}
		r.LastDirty, f.Dirty = st.DirtyBytes(), st.Dirty
		if st.Error != "" {
			m.j().save(r)
			return fail(fmt.Errorf("flush: the cache failed (%s) with %d dirty bytes", st.Error, st.DirtyBytes()))
		}
		if st.Dirty == 0 && st.Writeback == 0 {
			break
		}
		if time.Since(lastLog) >= every {
			lastLog = time.Now()
			m.j().save(r)
			m.noteFlush(r.Volume, f)
			m.log().Info("flushing volume cache", "volume", r.Volume,
				"dirty_blocks", st.Dirty, "of", f.First, "dirty_bytes", st.DirtyBytes(),
				"elapsed", time.Since(start).Round(time.Millisecond), "deadline", timeout)
		}
		if time.Now().After(f.Deadline) {
			m.j().save(r)
			return fail(fmt.Errorf("flush did not finish by its deadline (%s)", timeout))
		}
		select {
		case <-ctx.Done():
			m.j().save(r)
			return fail(fmt.Errorf("flush: %w", context.Cause(ctx)))
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Commit the now empty cache's metadata.
	if err := m.DM.Message(ctx, topName(r.Volume), "flush"); err != nil {
		return fail(err)
	}
	r.LastDirty = 0
	if err := m.j().save(r); err != nil {
		return fail(err)
	}
	m.noteFlush(r.Volume, nil)
	m.log().Info("volume cache flushed", "volume", r.Volume, "blocks", f.First, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Recover runs at agent start, before any volume is used: it finds every
// recorded mapping again (mapping anew after a reboot), reassembles each
// cache from the fast device with its dirty blocks, and finishes every
// detach that was under way (an agent killed mid-flush resumes the flush).
// One failing volume does not stop the others; their errors are joined.
// It is Reassemble, then ResumeDetaches.
func (m *Manager) Recover(ctx context.Context) error {
	if err := m.Reassemble(ctx); err != nil {
		return err
	}
	return m.ResumeDetaches(ctx)
}

// Reassemble finds every recorded mapping of an attached volume again and
// reassembles its cache from the fast device, with its dirty blocks: the
// part of Recover that must come before the volumes are used or checked.
func (m *Manager) Reassemble(ctx context.Context) error {
	recs, err := m.j().all()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range recs {
		if r.Phase == PhaseDetaching {
			continue
		}
		if err := m.reassemble(ctx, r.Volume); err != nil {
			errs = append(errs, fmt.Errorf("recover %s: %w", r.Volume, err))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) reassemble(ctx context.Context, volume string) error {
	r, unlock, err := m.lockRecord(ctx, volume, opRecover, waitAll)
	if r == nil {
		return err // or detached meanwhile
	}
	defer unlock()
	if r.Phase == PhaseDetaching {
		return nil
	}
	_, err = m.assemble(ctx, r)
	return err
}

// ResumeDetaches finishes every detach that was under way (an agent
// killed mid-flush resumes the flush), each beside the others; it returns
// once all have ended, with their errors joined.
func (m *Manager) ResumeDetaches(ctx context.Context) error {
	recs, err := m.j().all()
	if err != nil {
		return err
	}
	var (
		wg   sync.WaitGroup
		emu  sync.Mutex
		errs []error
	)
	for _, r := range recs {
		if r.Phase != PhaseDetaching {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.log().Info("resuming the detach of a volume", "volume", r.Volume)
			if err := m.Detach(ctx, r.Volume); err != nil {
				emu.Lock()
				errs = append(errs, fmt.Errorf("recover %s: %w", r.Volume, err))
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Progress is how far the write-back before a snapshot got: Dirty
// blocks left of First, after Elapsed.
type Progress struct {
	Dirty, First int64
	Elapsed      time.Duration
}

// Snapshot runs take (which makes the RBD snapshot through librbd) with
// the volume's writes held and its cache flushed, so the snapshot holds
// every write acknowledged before it; see SnapshotWith.
func (m *Manager) Snapshot(ctx context.Context, volume string, take func(ctx context.Context) error) error {
	return m.SnapshotWith(ctx, volume, nil, take)
}

// SnapshotWith runs take with the volume's writes held and its cache
// flushed. A writeback cache is first written back while the writes still
// flow (the cleaner mode; progress is called, and a line logged, every
// ProgressEvery, up to FlushTimeout), so that they are held only for what
// is dirtied meanwhile: dm-writecache writes that back on suspend
// (flush_on_suspend), and the snapshot is refused if any block is still
// dirty then. The image is mapped with the exclusive option, which refuses
// every other client the lock (librbd's snapshot included), so while the
// writes are held the origin shim is pointed away from the mapping, the
// image unmapped, the snapshot taken, and the image mapped again before
// the writes go on; the volume's own table (caching on) is loaded again
// after a write-back.
func (m *Manager) SnapshotWith(ctx context.Context, volume string, progress func(Progress), take func(ctx context.Context) error) error {
	r, unlock, err := m.lockRecord(ctx, volume, opSnapshot, waitAll)
	if r == nil {
		if err != nil {
			return err
		}
		return take(ctx) // not mapped here: nothing to hold
	}
	defer unlock()
	if r.Phase != PhaseAttached {
		return fmt.Errorf("snapshot %s: the volume is %s", volume, r.Phase)
	}
	top, shim := topName(volume), originName(volume)
	st, err := m.Stats(ctx, volume)
	if err != nil {
		return err
	}
	cleaned := false
	if st.Mode == dmcache.Writeback {
		if st.Error == "" {
			st.Error = r.CacheError
		}
		if st.Error != "" {
			return fmt.Errorf("snapshot %s: the cache failed (%s): its %d dirty bytes cannot be flushed", volume, st.Error, st.DirtyBytes())
		}
		if st.Dirty > 0 {
			// Marked as idle cleaning: an agent killed meanwhile turns
			// caching back on at the volume's next request (CleanIdle).
			r.IdleCleaning, cleaned = true, true
			if err := m.j().save(r); err != nil {
				return err
			}
			if err := m.writeBack(ctx, r, st.Dirty, st.Dirty, "for a snapshot", progress); err != nil {
				if berr := m.busyAgain(context.WithoutCancel(ctx), r); berr != nil {
					m.log().Error("caching on again after a failed write-back", "volume", volume, "err", berr)
				}
				return fmt.Errorf("snapshot %s: %w", volume, err)
			}
		}
		if err := m.DM.Message(ctx, top, "flush_on_suspend"); err != nil {
			return fmt.Errorf("snapshot %s: %w", volume, err)
		}
	}
	start := time.Now()
	if err := m.DM.Suspend(ctx, top); err != nil {
		return fmt.Errorf("snapshot %s: hold writes: %w", volume, err)
	}
	r.Snapshotting = true
	if err := m.j().save(r); err != nil {
		m.DM.Resume(context.WithoutCancel(ctx), top)
		return err
	}
	// Whatever happens below, map again, point the shim back and let the
	// writes go: a volume left suspended hangs its domain. (An agent killed
	// in between does the same on start: assemble.)
	defer func() {
		ctx := context.WithoutCancel(ctx)
		if _, err := m.assemble(ctx, r); err != nil {
			m.log().Error("resume after snapshot", "volume", volume, "err", err)
			return
		}
		if cleaned {
			if err := m.busyAgain(ctx, r); err != nil {
				m.log().Error("caching on again after a snapshot", "volume", volume, "err", err)
			}
		}
	}()
	if st.Mode == dmcache.Writeback {
		st, err := m.Stats(ctx, volume)
		if err != nil {
			return err
		}
		if st.Dirty != 0 {
			return fmt.Errorf("snapshot %s: %d dirty blocks after the flush on suspend", volume, st.Dirty)
		}
	}
	if err := m.DM.Reload(ctx, shim, fmt.Sprintf("0 %d error", r.Sectors)); err != nil {
		return fmt.Errorf("snapshot %s: %w", volume, err)
	}
	if d, ok, err := m.Mapper.Find(r.Image); err != nil {
		return err
	} else if ok {
		uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := m.Mapper.Unmap(uctx, d, false)
		cancel()
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", volume, err)
		}
	}
	m.log().Info("volume writes held for a snapshot", "volume", volume, "flush_took", time.Since(start).Round(time.Millisecond))
	return take(ctx)
}

// writeBack writes a writeback cache back while its writes still flow
// (the cleaner mode: new writes go around the cache) until no block is
// dirty (of first), or until the count, at most tail, stops falling for
// stallAfter: what is left then is being written again and again, and
// the flush on suspend (or after the unplug) takes it. It fails past
// FlushTimeout.
func (m *Manager) writeBack(ctx context.Context, r *Record, first, tail int64, why string, progress func(Progress)) error {
	const stallAfter = 2 * time.Second
	if err := m.DM.Message(ctx, topName(r.Volume), "cleaner"); err != nil {
		return err
	}
	timeout, every := m.flushBounds(r)
	start := time.Now()
	lastLog := time.Time{}
	low, lowAt := first, start
	for {
		st, err := m.Stats(ctx, r.Volume)
		if err != nil {
			return err
		}
		if st.Error != "" {
			return fmt.Errorf("write-back: the cache failed (%s) with %d dirty bytes", st.Error, st.DirtyBytes())
		}
		if st.Dirty < low {
			low, lowAt = st.Dirty, time.Now()
		}
		p := Progress{Dirty: st.Dirty, First: first, Elapsed: time.Since(start)}
		done := st.Dirty == 0 && st.Writeback == 0
		if done || time.Since(lastLog) >= every {
			lastLog = time.Now()
			if progress != nil {
				progress(p)
			}
			m.log().Info("writing the volume cache back "+why, "volume", r.Volume,
				"dirty_blocks", st.Dirty, "at_start", first, "elapsed", p.Elapsed.Round(time.Millisecond), "deadline", timeout)
		}
		if done || st.Dirty <= tail && time.Since(lowAt) >= stallAfter {
			return nil
		}
		if time.Since(start) > timeout {
			return fmt.Errorf("write-back: %d dirty blocks left after %s", st.Dirty, timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("write-back: %d dirty blocks left: %w", st.Dirty, context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// flushBounds are r's FlushTimeout (the volume type's, else the
// manager's) and ProgressEvery, with their defaults.
func (m *Manager) flushBounds(r *Record) (timeout, every time.Duration) {
	timeout, every = cmp.Or(r.FlushTimeout, m.FlushTimeout), m.ProgressEvery
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	if every <= 0 {
		every = 5 * time.Second
	}
	return timeout, every
}
