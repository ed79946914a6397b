// Package daemon wires strata-agent together: gossip membership, the plan
// watcher, the reconcile runner, status reports, metrics and systemd.
package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/strata-infra/strata/agent/config"
	"github.com/strata-infra/strata/agent/hostinfo"
	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/agent/reconcile"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
	"github.com/strata-infra/strata/pkg/gossip"
	"github.com/strata-infra/strata/pkg/sdnotify"
	"github.com/strata-infra/strata/pkg/version"
)

// ReportInterval is how often an agent reports even when nothing changed.
const ReportInterval = 10 * time.Second

// Agent is one running strata-agent.
type Agent struct {
	// hypervisor is the compute subsystem's domain type (SetHypervisor).
	hypervisor string

	cfg     *config.Config
	log     *slog.Logger
	client  *apiclient.Client
	member  *gossip.Member
	runner  *reconcile.Runner
	watcher *plan.Watcher
	reg     *prometheus.Registry

	report     chan struct{}
	readyCheck chan struct{}
	// ReadyWait bounds how long READY waits for the coordinator: a host
	// that cannot reach it still serves its saved plan, and systemd must
	// not fail the unit for that.
	ReadyWait time.Duration
	// What gossip meta should say; publishLoop brings it there, so a
	// reconcile pass never waits for a gossip broadcast.
	wantEpoch   atomic.Uint64
	wantDrained atomic.Bool
	metaDirty   chan struct{}
	background  []func(context.Context)
	reporters   []func(*api.HostReport)
	planHooks   []func(*plan.Snapshot)
	memberMu    sync.Mutex
}

// Background adds a loop that runs while the agent runs (a subsystem's
// supervisor, say); it must return when its context ends.
func (a *Agent) Background(f func(context.Context)) { a.background = append(a.background, f) }

// Reporter adds a subsystem's part to every status report: its host facts
// and the observed state of its resources (api.HostReport.Resources).
func (a *Agent) Reporter(f func(*api.HostReport)) { a.reporters = append(a.reporters, f) }

// OnPlan adds a hook called with every new plan as it arrives, before
// the reconcile pass takes it (which may be busy with an older one): for
// work that must not wait behind a pass, such as fencing a dead host. It
// runs on the plan watcher's goroutine and must not block.
func (a *Agent) OnPlan(f func(*plan.Snapshot)) { a.planHooks = append(a.planHooks, f) }

// ReportSoon sends a status report now (a subsystem's state changed
// between applies); it never blocks.
func (a *Agent) ReportSoon() { signal(a.report) }

// Peers is the gossip view (empty before Run has joined the pool).
func (a *Agent) Peers() []gossip.Peer {
	a.memberMu.Lock()
	m := a.member
	a.memberMu.Unlock()
	if m == nil {
		return nil
	}
	return m.Peers()
}

// New builds an agent; subsystems are registered on Runner() before Run.
func New(cfg *config.Config, log *slog.Logger) (*Agent, error) {
	token, err := cfg.Token()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	// Traversable, not listable (what is inside is root's alone): the
	// dnsmasq of each network drops to an unprivileged user that rereads
	// its files under dhcp/ (0710 to its group) on SIGHUP.
	if err := os.Chmod(cfg.StateDir, 0o711); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	client, err := apiclient.NewPinned(cfg.Coordinator.String(), token, cfg.CoordinatorCAFile)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: log, client: client, reg: prometheus.NewRegistry(), report: make(chan struct{}, 1), readyCheck: make(chan struct{}, 1), metaDirty: make(chan struct{}, 1), ReadyWait: 2 * time.Minute}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), version.BuildInfo("agent"))
	a.runner = reconcile.New(log.With("subsystem", "reconcile"), cfg.Resync, a.reg)
	a.runner.OnApplied = a.applied
	// A pass over 2,000 ports drops some 40 MB it allocated (links and nft
	// tables read back, rulesets compiled, the plan saved) while what the
	// agent keeps is some 15 MB; the runtime hands the difference back to
	// the host only minutes later. Once a burst of passes is over, return
	// it at once: one forced collection per burst.
	a.runner.OnQuiet, a.runner.QuietAfter = debug.FreeOSMemory, time.Second
	a.watcher, err = plan.NewWatcher(cfg.Name, a.client, filepath.Join(cfg.StateDir, "plan.json"), cfg.PollWait,
		log.With("subsystem", "plan"), a.planChanged)
	if err != nil {
		return nil, err
	}
	// The storage controller deletes the images its plan does not hold:
	// its host takes the storage plan, with every volume and snapshot.
	client.Storage, a.watcher.Storage = cfg.Storage.Controller, cfg.Storage.Controller
	client.OnSwitch = func(from, to string, err error) {
		log.Warn("coordinator out of reach: moved to another", "from", from, "to", to, "err", err)
	}
	return a, nil
}

func (a *Agent) planChanged(s *plan.Snapshot) {
	a.applyPool(s)
	a.runner.Update(s)
	for _, f := range a.planHooks {
		f(s)
	}
	a.publishDrain(s)
}

// publishDrain mirrors the operator's drain of this host into gossip meta,
// so every member sees it without asking the coordinator.
func (a *Agent) publishDrain(s *plan.Snapshot) {
	drained := false
	for _, r := range s.Kind("hostconfig") {
		if r.Name == a.cfg.Name {
			var hc api.HostConfigSpec
			_ = json.Unmarshal(r.Spec, &hc)
			drained = hc.Drained
		}
	}
	a.wantDrained.Store(drained)
	signal(a.metaDirty)
}

// Runner is where subsystems register their reconcilers.
func (a *Agent) Runner() *reconcile.Runner { return a.runner }

// Registry is where subsystems register their Prometheus metrics, served
// on metrics_addr.
func (a *Agent) Registry() prometheus.Registerer { return a.reg }

// Member is the agent's gossip member (valid after Run has started it).
func (a *Agent) Member() *gossip.Member { return a.member }

func (a *Agent) applied(epoch uint64) {
	a.wantEpoch.Store(epoch)
	signal(a.metaDirty)
	signal(a.report)
	signal(a.readyCheck)
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// publishLoop keeps the gossip meta on the applied epoch and drain state.
func (a *Agent) publishLoop(ctx context.Context, m *gossip.Member) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.metaDirty:
		}
		epoch, drained := a.wantEpoch.Load(), a.wantDrained.Load()
		if cur := m.Meta(); cur.AppliedEpoch == epoch && cur.Drained == drained {
			continue
		}
		err := m.UpdateMeta(func(meta *gossip.Meta) { meta.AppliedEpoch, meta.Drained = epoch, drained })
		if err != nil && ctx.Err() == nil {
			a.log.Warn("publish gossip meta", "epoch", epoch, "drained", drained, "err", err)
		}
	}
}

// Run starts gossip and every loop, and blocks until ctx ends; then it
// leaves the pool gracefully. Host state (devices, domains) is left as it
// is: a data plane keeps forwarding while the agent is down.
func (a *Agent) Run(ctx context.Context) error {
	m, err := a.startGossip()
	if err != nil {
		return err
	}
	a.memberMu.Lock()
	a.member = m
	a.memberMu.Unlock()
	defer m.Shutdown()
	// A plan that arrived while gossip was starting.
	a.applyPool(a.watcher.Snapshot())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	start := func(f func()) { wg.Add(1); go func() { defer wg.Done(); f() }() }
	start(func() { a.runner.Run(ctx, a.watcher.Snapshot()) })
	start(func() { a.watcher.Run(ctx) })
	start(func() { a.reportLoop(ctx) })
	start(func() { a.rejoinLoop(ctx) })
	start(func() { a.registerLoop(ctx, m) })
	start(func() { sdnotify.Watchdog(ctx, a.log, func() bool { return true }) })
	start(func() { a.kickOnMembership(ctx, m) })
	start(func() { a.readyLoop(ctx) })
	start(func() { a.publishLoop(ctx, m) })
	for _, f := range a.background {
		start(func() { f(ctx) })
	}
	var ms *http.Server
	if a.cfg.MetricsAddr != "" {
		ms = &http.Server{Addr: a.cfg.MetricsAddr, Handler: promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
		start(func() {
			if err := ms.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("metrics server", "err", err)
			}
		})
	}
	a.log.Info("agent started", "name", a.cfg.Name, "coordinators", a.cfg.Coordinator.String(), "plan_epoch", a.watcher.Snapshot().Epoch)
	<-ctx.Done()
	sdnotify.Stopping()
	a.log.Info("agent stopping")
	if ms != nil {
		sctx, c := context.WithTimeout(context.Background(), 2*time.Second)
		_ = ms.Shutdown(sctx)
		c()
	}
	_ = m.Leave(2 * time.Second)
	wg.Wait()
	return nil
}

// SetHypervisor records the domain type the compute subsystem runs
// instances as (kvm, qemu); gossip announces it for placement. Call it
// before Run.
func (a *Agent) SetHypervisor(domainType string) { a.hypervisor = domainType }

func (a *Agent) startGossip() (*gossip.Member, error) {
	cap, err := hostinfo.Capacity(a.cfg.StateDir, a.cfg.Reserved)
	if err != nil {
		return nil, err
	}
	if !a.cfg.Compute.Enabled {
		// A host without the compute subsystem has nothing to place on.
		cap = api.Capacity{}
	}
	meta := gossip.Meta{Role: gossip.RoleAgent, Zone: a.cfg.Zone, Aggregates: a.cfg.Aggregates,
		Arch: hostinfo.Arch(), Physnets: slices.Sorted(maps.Keys(a.cfg.Network.PhysicalNetworks)), Hypervisor: a.hypervisor,
		Storage: a.cfg.Storage.Backends(),
		VCPUs:   uint32(cap.VCPUs), RAMMiB: uint64(cap.RAMMiB), DiskGiB: uint64(cap.DiskGiB)}
	if a.cfg.Compute.Enabled {
		// The ratios the compute driver admits by, so the scheduler
		// places by the same.
		meta.Ratios = a.cfg.Compute.AllocationRatios
	}
	if a.cfg.VTEP != "" {
		meta.VTEP = netip.MustParseAddr(a.cfg.VTEP) // validated in config
	}
	gc := gossip.Config{Name: a.cfg.Name, Profile: a.cfg.Gossip.Profile, Logger: a.log.With("subsystem", "gossip"), Meta: meta, RegisteredOnly: true}
	if err := gc.SetAddrs(a.cfg.Gossip.Bind, a.cfg.Gossip.Advertise); err != nil {
		return nil, err
	}
	if err := a.poolFromPlan(&gc, a.watcher.Snapshot()); err != nil {
		return nil, err
	}
	m, err := gossip.New(gc)
	if err != nil {
		return nil, err
	}
	// Register before joining, so peers admit us from our first message.
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := a.register(rctx, m); err != nil {
		a.log.Warn("host identity not registered yet; will retry", "err", err)
	}
	cancel()
	a.join(m)
	return m, nil
}

// poolFromPlan fills the gossip keys and admitted hosts from the last plan
// kept on disk (the keys may have been rotated since the key file was
// written), falling back to the key file.
func (a *Agent) poolFromPlan(gc *gossip.Config, s *plan.Snapshot) error {
	if rings := s.Kind("gossipkeyring"); len(rings) == 1 {
		var spec api.GossipKeyringSpec
		if json.Unmarshal(rings[0].Spec, &spec) == nil {
			if keys, primary, err := gossip.DecodeKeyring(spec); err == nil {
				gc.Key = primary
				for _, k := range keys {
					if !bytes.Equal(k, primary) {
						gc.ExtraKeys = append(gc.ExtraKeys, k)
					}
				}
			}
		}
	}
	if gc.Key == nil {
		key, err := gossip.LoadKeyFile(a.cfg.Gossip.KeyFile)
		if err != nil {
			return fmt.Errorf("gossip key (required: the pool admits only members holding it): %w", err)
		}
		gc.Key = key
	}
	if s.Epoch > 0 {
		// A plan, even one with no host registered: admit by it.
		gc.Identities = gossip.Identities(s.Kind("hostidentity"))
	}
	return nil
}

// applyPool brings the gossip member to the plan's keyring and registered
// hosts: a rotation step, or a host (re-)registering.
func (a *Agent) applyPool(s *plan.Snapshot) {
	a.memberMu.Lock()
	m := a.member
	a.memberMu.Unlock()
	if m == nil {
		return
	}
	if s.Epoch > 0 {
		first := !m.KnowsIdentities()
		m.SetIdentities(gossip.Identities(s.Kind("hostidentity")))
		if first {
			// Agents refused while this host had no plan: pull the
			// pool's state again now that they can be checked.
			a.join(m)
		}
	}
	rings := s.Kind("gossipkeyring")
	if len(rings) != 1 {
		return
	}
	var spec api.GossipKeyringSpec
	err := json.Unmarshal(rings[0].Spec, &spec)
	var keys [][]byte
	var primary []byte
	if err == nil {
		keys, primary, err = gossip.DecodeKeyring(spec)
	}
	if err == nil {
		err = m.SetKeys(keys, primary)
	}
	if err != nil {
		a.log.Error("gossip keyring from the plan not applied", "epoch", s.Epoch, "err", err)
	}
}

// register binds this host's gossip address and VTEP to its name at the
// coordinator, with the host's own credential.
func (a *Agent) register(ctx context.Context, m *gossip.Member) error {
	spec := api.HostIdentitySpec{Addr: m.LocalAddr().Addr().String(), VTEP: a.cfg.VTEP}
	if spec.VTEP != "" {
		spec.VTEP = netip.MustParseAddr(spec.VTEP).String() // validated in config
	}
	return a.client.Do(ctx, http.MethodPut, "/v1/hosts/"+url.PathEscape(a.cfg.Name)+"/identity", spec, nil)
}

// registerLoop retries the registration until it is done once (the
// coordinator may be down when the agent starts).
func (a *Agent) registerLoop(ctx context.Context, m *gossip.Member) {
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := a.register(rctx, m)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func (a *Agent) join(m *gossip.Member) bool {
	if len(a.cfg.Gossip.Join) == 0 {
		return true
	}
	n, err := m.Join(a.cfg.Gossip.Join)
	if err != nil {
		a.log.Warn("gossip join failed; will retry", "join", a.cfg.Gossip.Join, "err", err)
		return false
	}
	a.log.Info("joined gossip pool", "contacted", n)
	return true
}

// rejoinLoop re-joins the configured peers while no coordinator is alive
// in this agent's view: agents started before the coordinator, cut off for
// a while, or outliving a coordinator restart (whose fresh member knows
// nobody) find the pool again within one tick.
func (a *Agent) rejoinLoop(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !coordinatorAlive(a.member.Peers()) {
				a.join(a.member)
			}
		}
	}
}

// kickOnMembership re-runs the reconcilers when gossip membership or meta
// changes, so the tunnel mesh follows hosts joining and leaving without
// waiting for the coordinator.
func (a *Agent) kickOnMembership(ctx context.Context, m *gossip.Member) {
	ch, cancel := m.Subscribe()
	defer cancel()
	wasAlive := coordinatorAlive(m.Peers())
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			a.runner.Kick()
			alive := coordinatorAlive(m.Peers())
			if alive && !wasAlive {
				// A restarted coordinator: watch and report now, not
				// when a back-off of up to 30 s runs out.
				a.watcher.Wake()
				signal(a.report)
			}
			wasAlive = alive
		}
	}
}

// readyLoop sends READY once the agent has applied the coordinator's
// current epoch (a watch has succeeded since start and every subsystem
// converged on its answer), or after ReadyWait without the coordinator,
// saying so: the host then serves the plan it saved.
func (a *Agent) readyLoop(ctx context.Context) {
	deadline := time.NewTimer(a.ReadyWait)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			applied := a.runner.Applied()
			sdnotify.Ready(fmt.Sprintf("coordinator not reached in %s; serving the saved plan at epoch %d", a.ReadyWait, applied))
			a.log.Warn("agent ready without the coordinator", "waited", a.ReadyWait, "applied_epoch", applied)
			return
		case <-a.readyCheck:
		case <-tick.C:
		}
		want, ok := a.watcher.CoordinatorEpoch()
		if applied := a.runner.Applied(); ok && applied >= want {
			sdnotify.Ready(fmt.Sprintf("converged on epoch %d", applied))
			a.log.Info("agent ready", "epoch", applied, "coordinator_epoch", want)
			return
		}
	}
}

// CoordinatorReachable reports whether gossip sees a coordinator alive.
func (a *Agent) CoordinatorReachable() bool { return coordinatorAlive(a.Peers()) }

func coordinatorAlive(peers []gossip.Peer) bool {
	for _, p := range peers {
		if p.State == gossip.StateAlive && p.MetaErr == nil && p.Meta.Role == gossip.RoleCoordinator {
			return true
		}
	}
	return false
}

func (a *Agent) reportLoop(ctx context.Context) {
	t := time.NewTicker(ReportInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.report:
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := a.client.Report(rctx, a.Report()); err != nil && ctx.Err() == nil {
			a.log.Warn("status report failed", "err", err)
		}
		cancel()
	}
}

// Report is the status report the agent sends.
func (a *Agent) Report() api.HostReport {
	rep := api.HostReport{
		Host: a.cfg.Name, AppliedEpoch: a.runner.Applied(), PlanEpoch: a.watcher.Snapshot().Epoch,
		FullSyncs: a.watcher.FullSyncs.Load(), DeltaSyncs: a.watcher.DeltaSyncs.Load(),
		Version: version.Version, Subsystems: a.runner.Status(), Physnets: []string{},
	}
	for p := range a.cfg.Network.PhysicalNetworks {
		rep.Physnets = append(rep.Physnets, p)
	}
	sort.Strings(rep.Physnets)
	for _, f := range a.reporters {
		f(&rep)
	}
	return rep
}
