// Package netagent is the agent's network subsystem: it maps the plan and
// the gossip membership onto this host's HostState and converges the
// network drivers (linuxbridge, dhcp, endpoint) on it.
package netagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/dhcp"
	"github.com/strata-infra/strata/agent/network/endpoint"
	"github.com/strata-infra/strata/agent/network/internal/nlink"
	"github.com/strata-infra/strata/agent/network/linuxbridge"
	"github.com/strata-infra/strata/agent/network/ovs"
	"github.com/strata-infra/strata/agent/network/planmap"
	"github.com/strata-infra/strata/agent/network/provider"
	"github.com/strata-infra/strata/agent/network/router"
	"github.com/strata-infra/strata/agent/network/secgroup"
	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/agent/reconcile"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/gossip"
	"github.com/strata-infra/strata/pkg/netspec"
)

// Config configures the subsystem.
type Config struct {
	// L2Driver is "linuxbridge" ("" too) or "ovs".
	L2Driver string
	// OVS configures the ovs driver (its Logger is set here).
	OVS         ovs.Config
	Self        planmap.Self
	NetNSPrefix string
	StateDir    string // the agent's; dnsmasq state goes below it
	DHCPDomain  string
	DHCPUser    string // the user dnsmasq drops to (dhcp.Config.User)
	// PhysicalNetworks maps physical networks to host interfaces.
	PhysicalNetworks map[string]string
	Logger           *slog.Logger
	// Peers is the gossip view, read at every pass.
	Peers func() []gossip.Peer
	// DeadGrace is how long a host declared dead keeps its tunnel entries
	// on this one: an agent restarting slower than failure detection
	// (an upgrade, say) must not cut its host's traffic.
	DeadGrace time.Duration
	// Kick asks for another pass, when a dead host's grace runs out.
	Kick func()
	// StatusChanged asks for a status report now: a supervised dnsmasq
	// was restarted.
	StatusChanged func()
}

// Reconciler converges the host's tenant networks.
type Reconciler struct {
	cfg     Config
	l2      network.L2
	drivers []named // in order: L2 first, security groups before anything plugs a port
	dhcp    *dhcp.Driver
	log     *slog.Logger
	mesh    map[string]netip.Addr // last remote VTEPs, to log changes
	expiry  *time.Timer           // next end of a dead host's grace
	status  resourceStatus
	retry   *reconcile.ResourceBackoff // each failing resource's next try
	links   *nlink.LinkCache           // one dump of the host's links per pass, for every driver
}

type named struct {
	name string
	network.Driver
}

// New opens the drivers. It starts no goroutine; run Supervise for the
// dnsmasq supervisor.
func New(cfg Config) (*Reconciler, error) {
	log := cfg.Logger.With("subsystem", "network")
	links, err := nlink.NewLinkCache("")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			links.Close()
		}
	}()
	lb, err := newL2(cfg, log, links)
	if err != nil {
		return nil, err
	}
	d, err := dhcp.New(dhcp.Config{NSPrefix: cfg.NetNSPrefix, StateDir: filepath.Join(cfg.StateDir, "dhcp"), Domain: cfg.DHCPDomain, User: cfg.DHCPUser, Logger: log, Restarted: cfg.StatusChanged, Links: links})
	if err != nil {
		lb.Close()
		return nil, err
	}
	ep, err := endpoint.New(endpoint.Config{NSPrefix: cfg.NetNSPrefix, Logger: log, Links: links})
	if err != nil {
		network.Multi{lb, d}.Close()
		return nil, err
	}
	pv, err := provider.New(provider.Config{Mappings: cfg.PhysicalNetworks, Logger: log, Links: links})
	if err != nil {
		network.Multi{lb, d, ep}.Close()
		return nil, err
	}
	rt, err := router.New(router.Config{NSPrefix: netspec.RouterNamespacePrefix(cfg.NetNSPrefix), Logger: log, Links: links})
	if err != nil {
		network.Multi{lb, d, ep, pv}.Close()
		return nil, err
	}
	sg, err := secgroup.New(secgroup.Config{Logger: log})
	if err != nil {
		network.Multi{lb, d, ep, pv, rt}.Close()
		return nil, err
	}
	ok = true
	// The L2 driver first: DHCP, endpoint and router legs plug into its
	// bridges. Security groups next, before anything plugs a port: a
	// port's filter is in force before its first packet (fail closed).
	return &Reconciler{cfg: cfg, l2: lb, drivers: []named{{"l2", lb}, {"provider", pv}, {"secgroup", sg}, {"dhcp", d},
		{"endpoint", ep}, {"router", rt}}, dhcp: d, log: log, status: newResourceStatus(), retry: reconcile.NewResourceBackoff(), links: links}, nil
}

// newL2 opens the configured L2 driver.
func newL2(cfg Config, log *slog.Logger, links *nlink.LinkCache) (network.L2, error) {
	if cfg.L2Driver != "ovs" {
		return linuxbridge.New(linuxbridge.Config{Logger: log, Links: links})
	}
	oc := cfg.OVS
	oc.Logger = log
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return ovs.New(ctx, oc)
}

// Name implements reconcile.Reconciler.
func (r *Reconciler) Name() string { return "network" }

// Ensure implements reconcile.Reconciler: it maps the plan onto this host,
// binds every network to the L2 driver and converges every driver. A
// resource that cannot be mapped or applied is left out or kept closed and
// reported in its own status; one that failed is retried on its own
// backoff (held, left as it is, until it is due or its spec changes),
// every driver runs whatever another one did. When only resources failed
// it returns reconcile.ResourceFailures: the pass counts as applied.
func (r *Reconciler) Ensure(ctx context.Context, h *plan.Host) error {
	peers := r.cfg.Peers()
	remote, next := RemoteVTEPs(peers, time.Now(), r.cfg.DeadGrace)
	r.logMesh(remote, peers)
	if next > 0 && r.cfg.Kick != nil {
		if r.expiry != nil {
			r.expiry.Stop()
		}
		r.expiry = time.AfterFunc(next, r.cfg.Kick)
	}
	// Each pass reads the links afresh once; the drivers share that dump
	// while no link changes. Between passes it is dropped, not kept: it
	// would be stale by the next pass and is some 400 links' worth of heap.
	r.links.Invalidate()
	defer r.links.Invalidate()
	st, probs := planmap.HostState(h, r.cfg.Self, remote)
	network.Bind(&st, r.l2)
	fails := map[api.Key]string{}
	for k, err := range probs {
		fails[k] = err.Error()
	}
	if err := st.Validate(); err != nil {
		r.status.pass(h, st, fails, false)
		return fmt.Errorf("plan at epoch %d: %w", h.Epoch, err)
	}
	now := time.Now()
	own, epochs := owners(h), resourceEpochs(h)
	st.Hold = map[string]bool{}
	held := map[api.Key]string{}
	for id, k := range own {
		if msg, ok := r.retry.Held(k, epochs[k], now); ok {
			st.Hold[id], held[k] = true, msg
		}
	}
	var errs []error
	sgOK := true
	gated := map[api.Key]bool{}
	for _, d := range r.drivers {
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.name == "endpoint" && !sgOK {
			for _, k := range holdUnfiltered(st, own) {
				gated[k] = true
			}
		}
		err := d.Set(ctx, st)
		if err != nil && d.name == "secgroup" && !onlyResources(err) {
			sgOK = false
		}
		errs = append(errs, err)
	}
	err := errors.Join(errs...)
	// This pass's failures get their next retry; held ones keep theirs.
	retrying := map[api.Key]bool{}
	var unowned []error
	for _, e := range network.ResourceErrors(err) {
		k, ok := own[network.HoldKey(e.Kind, e.ID)]
		if !ok {
			unowned = append(unowned, e) // a resource of no plan entry (a project's implicit default group)
			continue
		}
		if m, dup := fails[k]; dup {
			fails[k] = m + "; " + e.Error()
		} else {
			fails[k] = e.Error()
		}
	}
	for k, m := range fails {
		if _, mapping := probs[k]; !mapping {
			r.retry.Failed(k, epochs[k], m, now)
			retrying[k] = true
		}
	}
	for k, m := range held {
		if _, fresh := fails[k]; !fresh {
			fails[k], retrying[k] = m, true
		}
	}
	for k := range gated {
		if _, other := fails[k]; !other {
			fails[k] = "its security groups are not in force on this host: not plugged or changed until they are"
		}
	}
	r.retry.Keep(retrying)
	r.status.pass(h, st, fails, sgOK)
	if !onlyResources(err) {
		if len(probs) > 0 {
			err = errors.Join(err, probs.Err())
		}
		return err
	}
	if len(fails) == 0 && len(unowned) == 0 {
		return nil
	}
	return &reconcile.ResourceFailures{Err: failuresErr(fails, unowned), RetryIn: r.retry.Next(now)}
}

// holdUnfiltered holds every local endpoint whose port has security
// groups, while the group table is not in force: such a port is not
// plugged (one plugged before stays as it is, filtered by the table in
// force when it was). It returns the ports it held.
func holdUnfiltered(st network.HostState, own map[string]api.Key) []api.Key {
	filtered := map[string]bool{}
	for _, p := range st.Ports {
		if p.Host == st.Host && len(p.SecurityGroups) > 0 {
			filtered[p.ID] = true
		}
	}
	var out []api.Key
	for _, ep := range st.LocalEndpoints {
		if id := network.HoldKey("port", ep.PortID); filtered[ep.PortID] {
			st.Hold[id] = true
			if k, ok := own[id]; ok {
				out = append(out, k)
			}
		}
	}
	return out
}

// failuresErr lists the failing resources, in key order.
func failuresErr(fails map[api.Key]string, unowned []error) error {
	keys := make([]api.Key, 0, len(fails))
	for k := range fails {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	errs := make([]error, 0, len(keys)+len(unowned))
	for _, k := range keys {
		errs = append(errs, fmt.Errorf("%s: %s", k, fails[k]))
	}
	return errors.Join(append(errs, unowned...)...)
}

// onlyResources reports whether every error in err is one resource's.
func onlyResources(err error) bool {
	var n int
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *network.ResourceError:
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		default:
			n++
		}
	}
	walk(err)
	return n == 0
}

// L2Binding answers where the tap of port portID (as named on hosts) on
// network networkID plugs in: the network's binding from this host's last
// pass. It refuses a network the last pass did not set up here, and a
// port with security groups while the group table could not be applied:
// a port is never plugged before its filter is in force.
func (r *Reconciler) L2Binding(networkID, portID string) (network.L2Binding, error) {
	return r.status.binding(networkID, portID)
}

// logMesh logs hosts entering and leaving the tunnel mesh, with the
// gossip state that decided it.
func (r *Reconciler) logMesh(remote map[string]netip.Addr, peers []gossip.Peer) {
	state := map[string]gossip.State{}
	for _, p := range peers {
		state[p.Name] = p.State
	}
	for h, a := range remote {
		if old, ok := r.mesh[h]; !ok || old != a {
			r.log.Info("host joins the tunnel mesh", "host", h, "vtep", a, "gossip", state[h])
		}
	}
	for h := range r.mesh {
		if _, ok := remote[h]; !ok && h != r.cfg.Self.Host {
			r.log.Info("host leaves the tunnel mesh", "host", h, "gossip", state[h])
		}
	}
	r.mesh = remote
}

// Supervise restarts dnsmasq processes that die or hang, until ctx ends.
// On ovs hosts it also watches the canary flow, to restore the flows an
// ovs-vswitchd restart lost.
func (r *Reconciler) Supervise(ctx context.Context) {
	var wg sync.WaitGroup
	if o, ok := r.l2.(*ovs.Driver); ok {
		wg.Go(func() { o.Watch(ctx, time.Second) })
	}
	r.dhcp.Supervise(ctx, time.Second)
	wg.Wait()
}

// Report adds the supervised dnsmasq processes to the host's status, and
// the network resources that failed on this host (and those that failed
// Collectors are the network subsystem's Prometheus metrics (the dnsmasq
// supervisor's).
func (r *Reconciler) Collectors() []prometheus.Collector { return r.dhcp.Collectors() }

// before and have since been applied).
func (r *Reconciler) Report(rep *api.HostReport) {
	rep.Processes = append(rep.Processes, r.dhcp.Processes()...)
	rep.Network = &api.NetworkHost{L2Driver: "linuxbridge"}
	if o, ok := r.l2.(*ovs.Driver); ok {
		rep.Network = &api.NetworkHost{L2Driver: "ovs", Datapath: o.Datapath(), DatapathReason: o.DatapathReason(),
			FlowGeneration: o.Generation(), FlowRestores: o.Restores()}
	}
	r.status.report(rep)
}

// Close releases the drivers; the data plane stays as it is.
func (r *Reconciler) Close() error {
	var m network.Multi
	for _, d := range r.drivers {
		m = append(m, d.Driver)
	}
	return errors.Join(m.Close(), r.links.Close())
}

// RemoteVTEPs maps the agents gossip knows to their tunnel addresses,
// and says when the next dead host's grace ends (0: none pending).
//   - alive and suspect: in (SWIM has not ruled on a suspect; dropping it
//     on a slow probe would flap traffic).
//   - left: in. The agent stopped on purpose (systemctl stop or restart,
//     an upgrade) and by design left its data plane forwarding. A host
//     being retired loses its entries as its ports move away.
//   - dead: in for grace after SWIM declared it, then out: the host
//     stopped answering without a goodbye (crash, power, network), and
//     its entries go unless its agent is back within grace.
func RemoteVTEPs(peers []gossip.Peer, now time.Time, grace time.Duration) (map[string]netip.Addr, time.Duration) {
	out := map[string]netip.Addr{}
	var next time.Duration
	for _, p := range peers {
		if p.MetaErr != nil || p.Meta.Role != gossip.RoleAgent || !p.Meta.VTEP.IsValid() {
			continue
		}
		if p.State == gossip.StateDead {
			left := p.StateSince.Add(grace).Sub(now)
			if left <= 0 {
				continue
			}
			if next == 0 || left < next {
				next = left
			}
		}
		out[p.Name] = p.Meta.VTEP
	}
	return out, next
}
