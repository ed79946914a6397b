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
	op    change        // the change holding it
}

// change is what holds a volume's lock: what a caller turned away reads,
// and whether it may keep the lock for minutes (a flush).
type change struct {
	what string
	long bool
}

var (
	opAttach   = change{"an attach", false}
	opDetach   = change{"a detach (its cache's flush)", true}
	opSnapshot = change{"a snapshot (its cache's write-back, then writes held)", true}
	opDrain    = change{"a detach (its cache's write-back before the unplug)", true}
	opCheck    = change{"a check of its cache", false}
	opRecover  = change{"its reassembly at agent start", false}
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

// lockVolume takes volume's lock for op, waiting as w says and until ctx
// ends. It returns the unlock.
func (m *Manager) lockVolume(ctx context.Context, volume string, op change, w wait) (func(), error) {
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
		if w == waitNone || w == waitShort && l.op.long {
			err := &busyError{volume, l.op.what}
			m.unref(volume, l)
			m.lmu.Unlock()
			return nil, err
		}
		freed, holder := l.freed, l.op.what
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
	l.busy, l.freed, l.op = true, make(chan struct{}), op
	m.lmu.Unlock()
	return func() {
		m.lmu.Lock()
		defer m.lmu.Unlock()
		l.busy, l.op = false, change{}
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
func (m *Manager) lockRecord(ctx context.Context, volume string, op change, w wait) (*Record, func(), error) {
	unlock, err := m.lockVolume(ctx, volume, op, w)
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
