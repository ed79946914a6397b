// Package lease holds singleton work (the recovery controller, the
// storage controller's lease) on one coordinator at a time. One
// coordinator on bbolt holds every lease itself (Local); coordinators
// over etcd campaign for it through an etcd lease and election (Etcd), so
// when the holder dies its lease expires and another takes over.
//
// A holder checks Lost before each step, and commits what it writes under
// its hold's Key and Token (store.LeaseGuard): the token is a fencing
// token that grows with every new holder, and etcd refuses a commit whose
// holder's key is gone, so a holder that was cut off cannot act after its
// successor started, even before it notices.
package lease

import (
	"context"
	"sync"
)

// Leases hands out holds on named singleton work.
type Leases interface {
	// Acquire blocks until this coordinator holds name, or ctx ends.
	Acquire(ctx context.Context, name string) (Hold, error)
}

// Hold is one coordinator's hold on a lease.
type Hold interface {
	// Lost is closed when the hold is gone (released, or expired because
	// this coordinator could not reach the store in time).
	Lost() <-chan struct{}
	// Token is the fencing token: larger for every later holder.
	Token() int64
	// Key is the store key the hold exists as, made at revision Token
	// ("" for a local hold, which has no store key: nothing to check).
	Key() string
	// Release gives the lease up.
	Release(ctx context.Context) error
}

// Local is the leases of a coordinator alone on its store: one hold per
// name at a time inside this process.
type Local struct {
	mu    sync.Mutex
	held  map[string]chan struct{} // closed on release
	token int64
}

// NewLocal returns leases for a single coordinator.
func NewLocal() *Local { return &Local{held: map[string]chan struct{}{}} }

// Acquire waits until no other hold on name is open in this process.
func (l *Local) Acquire(ctx context.Context, name string) (Hold, error) {
	for {
		l.mu.Lock()
		prev, busy := l.held[name]
		if !busy {
			done := make(chan struct{})
			l.held[name] = done
			l.token++
			h := &localHold{l: l, name: name, done: done, token: l.token}
			l.mu.Unlock()
			return h, nil
		}
		l.mu.Unlock()
		select {
		case <-prev:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

type localHold struct {
	l     *Local
	name  string
	done  chan struct{}
	token int64
	once  sync.Once
}

func (h *localHold) Lost() <-chan struct{} { return h.done }
func (h *localHold) Token() int64          { return h.token }
func (h *localHold) Key() string           { return "" }

func (h *localHold) Release(context.Context) error {
	h.once.Do(func() {
		h.l.mu.Lock()
		delete(h.l.held, h.name)
		h.l.mu.Unlock()
		close(h.done)
	})
	return nil
}
