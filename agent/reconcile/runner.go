// Package reconcile runs the agent's subsystem reconcilers: each compares the
// plan with what is actually on the host and converges, level-triggered.
// The runner re-runs them on every plan change, on a resync period, and
// after failures with exponential backoff, and keeps their status.
package reconcile

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/api"
)

// Reconciler is one subsystem (network, compute, storage). Reconcile must be
// idempotent: running it twice on the same plan changes nothing the second
// time.
type Reconciler interface {
	Name() string
	Reconcile(ctx context.Context, p *plan.Snapshot) error
}

// Backoff bounds for failed passes.
const (
	MinBackoff = 500 * time.Millisecond
	MaxBackoff = 60 * time.Second
)

// Runner drives the registered reconcilers.
type Runner struct {
	recs    []Reconciler
	log     *slog.Logger
	resync  time.Duration
	updates chan *plan.Snapshot
	kick    chan struct{}
	metrics *metrics
	// OnApplied is called after a pass in which every reconciler succeeded.
	OnApplied func(epoch uint64)

	mu      sync.Mutex
	status  map[string]api.SubsystemStatus
	applied uint64
}

// New returns a runner; call Register, then Run.
func New(log *slog.Logger, resync time.Duration, reg prometheus.Registerer) *Runner {
	return &Runner{log: log, resync: resync, updates: make(chan *plan.Snapshot, 1), kick: make(chan struct{}, 1), status: map[string]api.SubsystemStatus{}, metrics: newMetrics(reg)}
}

// Register adds a subsystem.
func (r *Runner) Register(rec Reconciler) {
	r.recs = append(r.recs, rec)
	r.mu.Lock()
	r.status[rec.Name()] = api.SubsystemStatus{Name: rec.Name()}
	r.mu.Unlock()
}

// Update hands the runner a new plan; only the newest waiting one is kept.
func (r *Runner) Update(s *plan.Snapshot) {
	for {
		select {
		case r.updates <- s:
			return
		default:
		}
		select {
		case <-r.updates:
		default:
		}
	}
}

// Kick asks for a pass on the current plan soon, e.g. because the host's
// surroundings (gossip membership) changed rather than the plan.
func (r *Runner) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Applied is the epoch of the last plan every subsystem converged on.
func (r *Runner) Applied() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applied
}

// Status returns each subsystem's latest outcome, in registration order.
func (r *Runner) Status() []api.SubsystemStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]api.SubsystemStatus, 0, len(r.recs))
	for _, rec := range r.recs {
		out = append(out, r.status[rec.Name()])
	}
	return out
}

// Run reconciles until ctx ends, starting from initial.
func (r *Runner) Run(ctx context.Context, initial *plan.Snapshot) {
	cur := initial
	failures := 0
	timer := time.NewTimer(0) // first pass at once
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-r.updates:
			cur = s
		case <-r.kick:
		case <-timer.C:
		}
		if cur == nil {
			timer.Reset(r.resync)
			continue
		}
		if r.pass(ctx, cur) {
			failures = 0
			resetTimer(timer, r.resync)
			continue
		}
		failures++
		resetTimer(timer, backoff(failures))
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

func backoff(failures int) time.Duration {
	d := MinBackoff
	for i := 1; i < failures && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// pass runs every reconciler once; it reports whether all succeeded.
func (r *Runner) pass(ctx context.Context, s *plan.Snapshot) bool {
	ok := true
	for _, rec := range r.recs {
		start := time.Now()
		err := rec.Reconcile(ctx, s)
		r.metrics.observe(rec.Name(), err, time.Since(start))
		r.mu.Lock()
		st := r.status[rec.Name()]
		st.LastAttempt, st.Epoch = time.Now().UTC(), s.Epoch
		if err != nil {
			ok = false
			st.OK, st.Error = false, err.Error()
			st.Failures++
			r.log.Warn("reconcile failed", "subsystem", rec.Name(), "epoch", s.Epoch, "err", err, "failures", st.Failures)
		} else {
			st.OK, st.Error, st.Failures, st.LastSuccess = true, "", 0, st.LastAttempt
		}
		r.status[rec.Name()] = st
		r.mu.Unlock()
	}
	if !ok {
		return false
	}
	r.mu.Lock()
	changed := r.applied != s.Epoch
	r.applied = s.Epoch
	r.mu.Unlock()
	r.metrics.applied.Set(float64(s.Epoch))
	if changed {
		r.log.Info("plan applied", "epoch", s.Epoch, "resources", len(s.Resources))
	}
	if r.OnApplied != nil {
		r.OnApplied(s.Epoch)
	}
	return true
}
