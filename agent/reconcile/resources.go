package reconcile

import (
	"errors"
	"sync"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// ResourceFailures is what Ensure (or Prune) returns when a subsystem
// applied everything but some resources: each failing resource is in the
// subsystem's own status with its error and is retried on its own backoff
// (ResourceBackoff). The pass still counts as applied, so the host's
// applied epoch moves on and nothing else waits; the runner comes back
// after RetryIn, when the next failing resource is due.
type ResourceFailures struct {
	Err     error
	RetryIn time.Duration
}

func (e *ResourceFailures) Error() string { return e.Err.Error() }
func (e *ResourceFailures) Unwrap() error { return e.Err }

// onlyResources reports whether err is nil or a ResourceFailures, and the
// retry it asks for (0: none).
func onlyResources(err error) (bool, time.Duration) {
	var rf *ResourceFailures
	switch {
	case err == nil:
		return true, 0
	case errors.As(err, &rf):
		return true, rf.RetryIn
	}
	return false, 0
}

// ResourceBackoff keeps each failing resource's retry schedule: after its
// n-th failure in a row a resource waits backoff(n) (MinBackoff doubling
// to MaxBackoff) before it is tried again, unless its spec changes. Other
// resources are not affected.
type ResourceBackoff struct {
	mu sync.Mutex
	m  map[api.Key]retry
}

type retry struct {
	failures int
	epoch    uint64 // the resource's epoch when it failed
	next     time.Time
	msg      string
}

// NewResourceBackoff returns an empty schedule.
func NewResourceBackoff() *ResourceBackoff { return &ResourceBackoff{m: map[api.Key]retry{}} }

// Held reports whether resource k, at resource epoch epoch, waits for its
// retry at now, and the error it last failed with. A resource whose spec
// changed since it failed is not held.
func (b *ResourceBackoff) Held(k api.Key, epoch uint64, now time.Time) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.m[k]
	if !ok || r.epoch != epoch || !now.Before(r.next) {
		return "", false
	}
	return r.msg, true
}

// Failed records that resource k failed at now with msg, and schedules
// its next try.
func (b *ResourceBackoff) Failed(k api.Key, epoch uint64, msg string, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.m[k]
	if r.epoch != epoch {
		r.failures = 0 // a new spec starts a new schedule
	}
	r.failures++
	r.epoch, r.msg, r.next = epoch, msg, now.Add(backoff(r.failures))
	b.m[k] = r
}

// Keep drops every resource not in failing: they applied, or left the plan.
func (b *ResourceBackoff) Keep(failing map[api.Key]bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k := range b.m {
		if !failing[k] {
			delete(b.m, k)
		}
	}
}

// Next is how long until the next failing resource is due (0: none
// failing).
func (b *ResourceBackoff) Next(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	var next time.Duration
	for _, r := range b.m {
		d := max(r.next.Sub(now), time.Millisecond)
		if next == 0 || d < next {
			next = d
		}
	}
	return next
}

// Failures is how many times in a row k has failed.
func (b *ResourceBackoff) Failures(k api.Key) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[k].failures
}
