// Package computeagent is the agent's compute subsystem: it maps this
// host's instances in the plan (with their flavors, images and ports) onto
// the libvirt driver, keeps the power state in sync both ways, and reports
// each instance's observed state back to the coordinator.
//
// Power sync follows nova's rule: a guest that stops outside Strata (it
// powered itself off, crashed, or its qemu was killed) is reported stopped
// and stays stopped; it is started again only when its instance changes
// (stratactl instances start bumps spec.starts). The reconciler remembers,
// per instance, the resource epoch at which it last saw it running, in its
// state dir, so an agent restart does not restart such a guest either.
package computeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/strata-infra/strata/agent/compute"
	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
)

// Driver is the compute driver with its event loop.
type Driver interface {
	compute.Compute
	Run(ctx context.Context)
}

// Config configures the subsystem.
type Config struct {
	Host   string // this host's name in the cluster
	Driver Driver
	// Boot, when set, boots every instance's kernel directly (test and
	// lab guests); nil in production.
	Boot *compute.DirectBoot
	// StateDir keeps which instances were seen running at which epoch.
	StateDir string
	Logger   *slog.Logger
	// Kick asks the agent for a reconcile pass (and so a status report)
	// after the driver saw a change.
	Kick func()
	// L2 is the network side: where each NIC plugs in. Without one, an
	// instance with ports is reported and not started.
	L2 L2
}

// StoppedOutside is the status message of a guest that stopped behind
// Strata's back.
const StoppedOutside = "stopped outside Strata (powered off, crashed or its qemu killed); it stays stopped until started again (stratactl instances start)"

// Reconciler is the compute subsystem.
type Reconciler struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	mapped   bool // a pass has mapped the plan: last is this host's instances
	last     []wanted
	seen     map[string]uint64    // instance key -> epoch at which it was seen running
	received map[string]time.Time // instance key -> first pass at its current epoch
	recvAt   map[string]uint64
	started  map[string]time.Time // instance key -> when a Set started its domain
	adopted  map[string]bool      // instance key -> stopped outside Strata
}

// New loads what the subsystem remembers. It starts no goroutine; Run does.
func New(cfg Config) (*Reconciler, error) {
	if cfg.Driver == nil || cfg.StateDir == "" {
		return nil, errors.New("computeagent: driver and state dir are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Kick == nil {
		cfg.Kick = func() {}
	}
	r := &Reconciler{cfg: cfg, log: cfg.Logger.With("subsystem", "compute"), seen: map[string]uint64{},
		received: map[string]time.Time{}, recvAt: map[string]uint64{}, started: map[string]time.Time{}, adopted: map[string]bool{}}
	b, err := os.ReadFile(r.seenFile())
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &r.seen); err != nil {
			// Not fatal: what it held (when each guest was last seen
			// running) is rebuilt from the next passes.
			aside, serr := plan.SetAside(r.seenFile())
			if serr != nil {
				return nil, fmt.Errorf("computeagent: %s unreadable (%v): %w", r.seenFile(), err, serr)
			}
			r.log.Error("running-state file is unreadable; set it aside", "err", err, "moved_to", aside)
			r.seen = map[string]uint64{}
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("computeagent: %w", err)
	}
	return r, nil
}

func (r *Reconciler) seenFile() string { return filepath.Join(r.cfg.StateDir, "running.json") }

// Name implements reconcile.Reconciler.
func (r *Reconciler) Name() string { return "compute" }

// Ensure implements reconcile.Reconciler: the driver's Set with this
// host's instances, a guest stopped outside Strata held stopped. Set also
// removes the domains no longer wanted (compute has no separate Prune: it
// is last up and first down).
func (r *Reconciler) Ensure(ctx context.Context, h *plan.Host) error {
	ws := desired(h, r.cfg.Host, r.cfg.Boot, r.cfg.L2)
	before := powers(r.cfg.Driver.Status())
	now := time.Now()
	r.mu.Lock()
	keep := map[string]bool{}
	for i := range ws {
		w := &ws[i]
		k := w.Key.String()
		keep[k] = true
		if r.recvAt[k] != w.Epoch {
			r.recvAt[k], r.received[k] = w.Epoch, now
		}
		p := before[w.In.Spec.ID]
		r.adopted[k] = w.In.Spec.Power == computespec.PowerRunning && r.seen[k] == w.Epoch &&
			(p == computespec.PowerStopped || p == computespec.PowerCrashed)
		if r.adopted[k] {
			w.In.Spec.Power = computespec.PowerStopped
		}
	}
	for _, m := range []map[string]time.Time{r.received, r.started} {
		for k := range m {
			if !keep[k] {
				delete(m, k)
			}
		}
	}
	for k := range r.adopted {
		if !keep[k] {
			delete(r.adopted, k)
			delete(r.recvAt, k)
		}
	}
	r.last, r.mapped = ws, true
	r.mu.Unlock()

	ins := make([]compute.Instance, len(ws))
	for i, w := range ws {
		ins[i] = w.In
	}
	setErr := r.cfg.Driver.Set(ctx, ins)
	after := powers(r.cfg.Driver.Status())
	r.mu.Lock()
	for _, w := range ws {
		id := w.In.Spec.ID
		if after[id] == computespec.PowerRunning && before[id] != computespec.PowerRunning {
			r.started[w.Key.String()] = time.Now()
		}
	}
	r.mu.Unlock()
	r.noteRunning(after)
	if setErr != nil {
		return fmt.Errorf("compute: %w", setErr)
	}
	return nil
}

func powers(st compute.HostStatus) map[string]computespec.PowerState {
	out := map[string]computespec.PowerState{}
	for _, s := range st.Instances {
		out[s.ID] = s.Power
	}
	return out
}

// noteRunning records the epoch at which each running instance was seen
// running, and saves it when that changed.
func (r *Reconciler) noteRunning(p map[string]computespec.PowerState) {
	r.mu.Lock()
	changed := false
	keep := map[string]bool{}
	for _, w := range r.last {
		k := w.Key.String()
		keep[k] = true
		if p[w.In.Spec.ID] == computespec.PowerRunning && r.seen[k] != w.Epoch {
			r.seen[k], changed = w.Epoch, true
		}
	}
	for k := range r.seen {
		if !keep[k] && r.mapped {
			delete(r.seen, k)
			changed = true
		}
	}
	var b []byte
	if changed {
		b, _ = json.Marshal(r.seen)
	}
	r.mu.Unlock()
	if changed {
		if err := writeFile(r.seenFile(), b); err != nil {
			r.log.Warn("save running instances", "err", err)
		}
	}
}

func writeFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Run runs the driver's event loop and, whenever the driver saw a change,
// asks for a pass so the change is reported at once. It returns when ctx
// ends, closing the driver (domains keep running).
func (r *Reconciler) Run(ctx context.Context) {
	done := make(chan struct{})
	go func() { defer close(done); r.cfg.Driver.Run(ctx) }()
	defer func() {
		<-done
		r.cfg.Driver.Close()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.cfg.Driver.Observe():
			r.noteRunning(powers(r.cfg.Driver.Status()))
			r.cfg.Kick()
		}
	}
}

// Report adds the host's compute facts and every instance's observed state
// to the agent's status report.
func (r *Reconciler) Report(rep *api.HostReport) {
	st := r.cfg.Driver.Status()
	byID := map[string]compute.InstanceStatus{}
	for _, s := range st.Instances {
		byID[s.ID] = s
	}
	rep.Compute = &api.ComputeHost{
		Connected: st.Connected, DomainType: st.DomainType, DomainTypeReason: st.DomainTypeReason,
		Capacity: capacity(st.Capacity), Used: capacity(st.Used), Instances: len(st.Instances), LastSweep: st.LastSweep,
	}
	now := time.Now().UTC()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.last {
		k := w.Key.String()
		s := byID[w.In.Spec.ID]
		power := s.Power
		if power == "" {
			power = computespec.PowerMissing
		}
		msg := s.Error
		switch {
		case w.Err != "":
			msg = w.Err
		case r.adopted[k]:
			msg = StoppedOutside
		}
		d := api.InstanceDetail{ID: w.In.Spec.ID, Domain: s.Domain, DomainType: st.DomainType, Power: string(power),
			Addresses: w.Addrs, ConsoleTail: s.ConsoleLog, PowerChanged: s.Changed,
			PlanReceived: r.received[k], Started: r.started[k]}
		b, _ := json.Marshal(d)
		rep.Resources = append(rep.Resources, api.ResourceReport{Key: w.Key, ResourceStatus: api.ResourceStatus{
			State: string(power), Message: msg, Epoch: w.Epoch, Updated: now, Detail: b}})
	}
}

func capacity(c computespec.Capacity) api.Capacity {
	return c.Sub(api.Capacity{}) // never below zero
}
