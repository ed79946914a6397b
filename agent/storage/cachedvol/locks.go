package cachedvol

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Each volume has a lock of its own: a flush holds it for up to its
// deadline (minutes), and must hold up no other volume's attach, detach,
// snapshot or check. What the volumes share, the fast device's free
// space, has its own (Manager.alloc).

// volumeLock is one volume's.
type volumeLock struct {
	busy  bool
	freed chan struct{} // closed when the holder lets go
	refs  int           // callers holding or waiting for it; at 0 it is dropped
	op    string        // the change holding it, for a caller turned away
	long  bool          // the holder may keep it for minutes (a flush)
}

// Changes that hold a volume's lock, as a caller turned away reads them.
const (
	opAttach   = "an attach"
	opDetach   = "a detach (its cache's flush)"
	opSnapshot = "a snapshot (its cache's write-back, then writes held)"
	opDrain    = "a detach (its cache's write-back before the unplug)"
	opCheck    = "a check of its cache"
	opRecover  = "its reassembly at agent start"
)

// How long a caller waits for a volume's lock.
type wait int

const (
	waitAll   wait = iota // until the holder lets go
	waitShort             // while the holder is a short change; turned away by a long one
	waitNone              // turned away if the lock is held
)

// busyError turns a caller away from a volume another change holds.
type busyError struct{ volume, holder string }

func (e *busyError) Error() string {
	return fmt.Sprintf("volume %s is busy with %s; tried again later", e.volume, e.holder)
}

// lockVolume takes volume's lock for op (long: op may keep it for
// minutes), waiting as w says and until ctx ends. It returns the unlock.
func (m *Manager) lockVolume(ctx context.Context, volume, op string, long bool, w wait) (func(), error) {
	m.lmu.Lock()
	if m.locks == nil {
		m.locks = map[string]*volumeLock{}
	}
	l := m.locks[volume]
	if l == nil {
		l = &volumeLock{}
		m.locks[volume] = l
	}
	l.refs++
	for l.busy {
		if w == waitNone || w == waitShort && l.long {
			err := &busyError{volume, l.op}
			m.unref(volume, l)
			m.lmu.Unlock()
			return nil, err
		}
		freed, holder := l.freed, l.op
		m.lmu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			m.lmu.Lock()
			m.unref(volume, l)
			m.lmu.Unlock()
			return nil, fmt.Errorf("volume %s: waiting for %s to end: %w", volume, holder, context.Cause(ctx))
		}
		m.lmu.Lock()
	}
	l.busy, l.freed, l.op, l.long = true, make(chan struct{}), op, long
	m.lmu.Unlock()
	return func() {
		m.lmu.Lock()
		defer m.lmu.Unlock()
		l.busy, l.op, l.long = false, "", false
		close(l.freed)
		m.unref(volume, l)
	}, nil
}

// unref drops a caller's reference; m.lmu is held.
func (m *Manager) unref(volume string, l *volumeLock) {
	if l.refs--; l.refs == 0 {
		delete(m.locks, volume)
	}
}

// lockRecord takes volume's lock as lockVolume does and loads its record;
// a volume without one gets nil, and its lock is let go.
func (m *Manager) lockRecord(ctx context.Context, volume, op string, long bool, w wait) (*Record, func(), error) {
	unlock, err := m.lockVolume(ctx, volume, op, long, w)
	if err != nil {
		return nil, nil, err
	}
	r, err := m.j().load(volume)
	if err != nil {
		unlock()
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
		return nil, nil, err
	}
	return r, unlock, nil
}
