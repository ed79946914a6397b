// Package reconcile runs the agent's subsystem reconcilers: each compares the
// plan with what is actually on the host and converges, level-triggered.
// The runner re-runs them on every plan change, on a resync period, and
// after failures with exponential backoff, and keeps their status.
//
// A pass decodes the plan once (plan.Decode) and hands every subsystem the
// same typed host plan. Subsystems run in an explicit order: Ensure
// forward (network, storage, compute: a bridge and a volume are there
// before a domain starts), then Prune in reverse (compute, storage,
// network: a domain is gone before its volume is detached). A subsystem
// that fails does not stop the others; the pass's errors are joined.
//
// Failures come in two sizes. A subsystem that fails as a whole (its
// driver cannot reach the kernel, the plan does not map) keeps the applied
// epoch where it was, and the pass is retried with backoff. A subsystem
// that applied everything but some resources says so with
// ResourceFailures: those resources carry their errors in the host's
// report and are retried each on its own backoff (ResourceBackoff), while
// the pass counts as applied and everything else moves on.
package reconcile

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/api"
)

// Reconciler is one subsystem (network, compute, storage). Ensure creates
// and updates what the plan wants; a subsystem that has no separate Prune
// step (it does not implement Pruner) also removes what the plan no longer
// wants there. Both must be idempotent: running them twice on the same
// plan changes nothing the second time.
type Reconciler interface {
	Name() string
	Ensure(ctx context.Context, p *plan.Host) error
}

// Pruner is a subsystem that removes what the plan no longer wants in its
// own step, run after every subsystem's Ensure, in reverse order, and only
// when every subsystem after it (which may still use what it removes) has
// converged in this pass.
type Pruner interface {
	Prune(ctx context.Context, p *plan.Host) error
}

// Order places a subsystem in a pass; lower ensures first and prunes last.
type Order int

// The subsystems' places. A new one picks a place between these by what it
// must exist before (ensure) and outlive (prune).
const (
	OrderNetwork Order = 100 // bridges, ports and filters before anything plugs into them
	OrderStorage Order = 200 // volumes attached before a domain starts, detached after it is gone
	OrderCompute Order = 300 // domains last up, first down
)

// Backoff bounds for failed passes.
const (
	MinBackoff = 500 * time.Millisecond
	MaxBackoff = 60 * time.Second
)

// Runner drives the registered reconcilers.
type Runner struct {
	recs    []registered
	log     *slog.Logger
	resync  time.Duration
	updates chan *plan.Snapshot
	kick    chan struct{}
	metrics *metrics
	// OnApplied is called after a pass in which every reconciler succeeded.
	OnApplied func(epoch uint64)
	// OnQuiet, when set, is called once QuietAfter has passed without a
	// pass after one or more passes: when a burst of changes is over.
	OnQuiet    func()
	QuietAfter time.Duration

	mu      sync.Mutex
	status  map[string]api.SubsystemStatus
	applied uint64
}

type registered struct {
	order Order
	Reconciler
}

// New returns a runner; call Register, then Run.
func New(log *slog.Logger, resync time.Duration, reg prometheus.Registerer) *Runner {
	return &Runner{log: log, resync: resync, updates: make(chan *plan.Snapshot, 1), kick: make(chan struct{}, 1), status: map[string]api.SubsystemStatus{}, metrics: newMetrics(reg)}
}

// Register adds a subsystem at its place in the order; subsystems of the
// same order keep their registration order.
func (r *Runner) Register(order Order, rec Reconciler) {
	r.recs = append(r.recs, registered{order, rec})
	sort.SliceStable(r.recs, func(i, j int) bool { return r.recs[i].order < r.recs[j].order })
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

// Status returns each subsystem's latest outcome, in pass order.
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
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-r.updates:
			cur = s
		case <-r.kick:
		case <-timer.C:
		case <-quiet.C:
			r.OnQuiet()
			continue
		}
		if cur == nil {
			timer.Reset(r.resync)
			continue
		}
		if r.OnQuiet != nil {
			resetTimer(quiet, r.QuietAfter)
		}
		if ok, retry := r.pass(ctx, cur); ok {
			failures = 0
			next := r.resync
			if retry > 0 && retry < next {
				next = retry // a failing resource's own retry
			}
			resetTimer(timer, next)
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

// pass runs every subsystem once: Ensure in order, then Prune in reverse.
// It reports whether the pass applied (every subsystem succeeded, or
// failed only on resources it retries itself) and the soonest such retry.
func (r *Runner) pass(ctx context.Context, s *plan.Snapshot) (bool, time.Duration) {
	h := plan.Decode(s)
	errs := make([]error, len(r.recs))
	for i, rec := range r.recs {
		errs[i] = r.run(rec.Name(), "ensure", func() error { return rec.Ensure(ctx, h) })
	}
	// Down the order: a subsystem prunes only once everything after it
	// (which may still use what it would remove) has converged.
	// A subsystem that failed only on some resources still prunes, and
	// lets the ones before it prune: it reports a failure as a resource's
	// only when nothing earlier in the order depends on that resource.
	later := true
	for i := len(r.recs) - 1; i >= 0; i-- {
		ok, _ := onlyResources(errs[i])
		if p, isPruner := r.recs[i].Reconciler.(Pruner); isPruner && ok && later {
			errs[i] = r.run(r.recs[i].Name(), "prune", func() error { return p.Prune(ctx, h) })
			ok, _ = onlyResources(errs[i])
		}
		later = later && ok
	}
	applied, retry := true, time.Duration(0)
	for i, rec := range r.recs {
		r.record(rec.Name(), s.Epoch, errs[i])
		ok, d := onlyResources(errs[i])
		applied = applied && ok
		if d > 0 && (retry == 0 || d < retry) {
			retry = d
		}
	}
	if !applied {
		return false, 0
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
	return true, retry
}

// run times one step of a subsystem.
func (r *Runner) run(name, step string, f func() error) error {
	start := time.Now()
	err := f()
	r.metrics.observe(name, err, time.Since(start))
	if ok, _ := onlyResources(err); err != nil && ok {
		r.log.Warn("resources failed", "subsystem", name, "step", step, "err", err)
	} else if err != nil {
		r.log.Warn("reconcile failed", "subsystem", name, "step", step, "err", err)
	}
	return err
}

// record keeps a subsystem's outcome of one pass.
func (r *Runner) record(name string, epoch uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.status[name]
	st.LastAttempt, st.Epoch = time.Now().UTC(), epoch
	if ok, _ := onlyResources(err); err != nil && ok {
		// Applied but for resources that carry their own errors.
		st.OK, st.Error, st.Failures, st.LastSuccess = true, err.Error(), 0, st.LastAttempt
	} else if err != nil {
		st.OK, st.Error = false, err.Error()
		st.Failures++
	} else {
		st.OK, st.Error, st.Failures, st.LastSuccess = true, "", 0, st.LastAttempt
	}
	r.status[name] = st
}
