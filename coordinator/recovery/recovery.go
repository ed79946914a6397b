// Package recovery is the coordinator's recovery controller: when gossip
// has declared a host dead for longer than a grace, it fences the host in
// Ceph (a fence resource the active storage controller applies and
// records), and only once the fence is recorded moves what the host ran:
// instances on RBD restart elsewhere through the scheduler, routers and
// DHCP servers are placed on other hosts with the same addresses. A host
// that comes back clean (alive, its old domains gone) has its fence
// released. One controller is active at a time: the holder of LeaseName.
package recovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/strata-infra/strata/coordinator/lease"
	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/contract"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// LeaseName is the lease the recovery controller holds while it acts: a
// single coordinator holds it itself (lease.Local), HA coordinators hold
// it through an etcd lease (lease.Etcd), so that two never fence or move
// the same host's things, and when the holder dies its lease expires and
// another coordinator's controller carries on from the store.
const LeaseName = "recovery"

// errLeaseLost stops a pass whose hold went away mid-way: its successor
// carries on from what was committed. It is the store's error, so a
// commit the store refused for the same reason stops the pass the same.
var errLeaseLost = store.ErrLeaseLost

// Config tunes the controller.
type Config struct {
	// Grace is how long a host stays dead in gossip before it is fenced
	// (a host that comes back within it is left alone).
	Grace time.Duration
	// FenceExpiry is the blocklist entries' expiry (renewed while held).
	FenceExpiry time.Duration
	// Interval is how often a pass runs (besides after every commit).
	Interval time.Duration
	// Retry is how often an instance that could not be moved is tried again.
	Retry time.Duration
	// Retention is how long a released fence stays as the record of what
	// was fenced when before it is pruned.
	Retention time.Duration
}

// DefaultConfig suits a LAN: SWIM declares death in a few seconds, then
// 30 s of grace; released fences are kept for a week.
func DefaultConfig() Config {
	return Config{Grace: 30 * time.Second, FenceExpiry: 24 * time.Hour, Interval: time.Second, Retry: 10 * time.Second,
		Retention: 7 * 24 * time.Hour}
}

// Controller is the recovery controller.
type Controller struct {
	cfg    Config
	store  *store.Store
	reg    *registry.Registry
	hosts  func() []api.Host
	leases lease.Leases
	log    *slog.Logger
	now    func() time.Time

	mu sync.Mutex
	// hold is the lease this controller acts under (nil: none now).
	hold lease.Hold
	// tried is when an instance's move was last refused.
	tried map[api.Key]time.Time
	// moved is the epoch of the last move off each fenced host: the host
	// is clean once it has applied it.
	moved map[string]uint64
}

// New returns a controller over the store, placing with reg's scheduler
// and reading liveness from hosts (the gossip view), acting only while it
// holds LeaseName of leases (nil: a local lease, for a coordinator alone).
func New(cfg Config, st *store.Store, reg *registry.Registry, hosts func() []api.Host, leases lease.Leases, log *slog.Logger) *Controller {
	d := DefaultConfig()
	if cfg.Grace <= 0 {
		cfg.Grace = d.Grace
	}
	if cfg.FenceExpiry <= 0 {
		cfg.FenceExpiry = d.FenceExpiry
	}
	if cfg.Interval <= 0 {
		cfg.Interval = d.Interval
	}
	if cfg.Retry <= 0 {
		cfg.Retry = d.Retry
	}
	if cfg.Retention <= 0 {
		cfg.Retention = d.Retention
	}
	if leases == nil {
		leases = lease.NewLocal()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Controller{cfg: cfg, store: st, reg: reg, hosts: hosts, leases: leases, log: log,
		now: time.Now, tried: map[api.Key]time.Time{}, moved: map[string]uint64{}}
}

// Run campaigns for the recovery lease until ctx ends; while it holds
// the lease it passes every Interval and after commits. A lost lease (the
// holder cut off from etcd past its TTL) stops the passes until it is
// held again; a successor starts from the store alone.
func (c *Controller) Run(ctx context.Context) {
	for ctx.Err() == nil {
		h, err := c.leases.Acquire(ctx, LeaseName)
		if err != nil {
			if ctx.Err() == nil {
				c.log.Warn("recovery lease not acquired", "err", err)
				sleep(ctx, c.cfg.Interval)
			}
			continue
		}
		c.log.Info("recovery lease held: this coordinator runs recovery", "token", h.Token())
		c.act(ctx, h)
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = h.Release(rctx)
		cancel()
	}
}

// act runs passes under hold h until ctx ends or h is lost: every
// Interval, after every commit, and when a fence's status is reported.
func (c *Controller) act(ctx context.Context, h lease.Hold) {
	c.mu.Lock()
	// Refusals seen before are stale now: try everything afresh. (What
	// a predecessor moved is not known here; releaseIfClean falls back
	// to the fence's epoch and the instances' placement for it.)
	c.hold, c.tried = h, map[api.Key]time.Time{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.hold = nil
		c.mu.Unlock()
	}()
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		changed, reported := c.store.Changed(), c.store.FenceReported()
		if err := c.Pass(); err != nil && !errors.Is(err, errLeaseLost) {
			c.log.Warn("recovery pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-h.Lost():
			c.log.Warn("recovery lease lost: this coordinator stops recovery", "token", h.Token())
			return
		case <-t.C:
		case <-changed:
		case <-reported:
		}
	}
}

// Holding reports whether this controller holds the recovery lease now.
func (c *Controller) Holding() bool {
	c.mu.Lock()
	h := c.hold
	c.mu.Unlock()
	if h == nil {
		return false
	}
	select {
	case <-h.Lost():
		return false
	default:
		return true
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// fenceRes is one stored fence.
type fenceRes struct {
	res  api.Resource
	spec api.FenceSpec
}

// Pass is one level-triggered pass: fence the hosts dead past the grace,
// move what fenced hosts ran, release the fences of hosts back clean
// (restarting what was held on them), prune old released fences.
// Each host's and resource's step is its own commit: one that fails
// stalls no other.
func (c *Controller) Pass() error {
	hosts := c.hosts()
	reports, err := c.store.Reports()
	if err != nil {
		return err
	}
	fences, err := c.fences()
	if err != nil {
		return err
	}
	var errs []error
	quorum := c.quorum(hosts)
	for _, h := range hosts {
		active := activeFence(fences, h.Name)
		switch {
		case h.State == api.StateDead && active == nil:
			if !quorum {
				c.log.Warn("host dead, but this coordinator sees too few hosts alive to fence it (it may be the cut-off side)", "host", h.Name)
				continue
			}
			if c.now().Sub(h.StateSince) < c.cfg.Grace {
				continue
			}
			errs = append(errs, c.fence(h, reports[h.Name], fences))
		case active == nil:
		case h.State == api.StateAlive:
			errs = append(errs, c.releaseIfClean(h, reports[h.Name], active))
		}
	}
	for _, f := range fences {
		if f.spec.Released {
			errs = append(errs, c.prune(f))
			continue
		}
		if _, err := c.recorded(f); err != nil {
			continue // not yet in force: nothing moves
		}
		errs = append(errs, c.evacuate(f.spec.Host, f.res.Name, hosts, reports))
	}
	return errors.Join(errs...)
}

// quorum reports whether this coordinator sees more than half of the pool
// (the agents not gone on purpose, and itself) alive: the side of a
// partition that sees fewer never fences anyone.
func (c *Controller) quorum(hosts []api.Host) bool {
	alive, total := 1, 1
	for _, h := range hosts {
		if h.State == api.StateLeft {
			continue
		}
		total++
		if h.State == api.StateAlive {
			alive++
		}
	}
	return alive*2 > total
}

func (c *Controller) fences() ([]fenceRes, error) {
	var out []fenceRes
	err := c.store.View(func(tx *store.Tx) error {
		rs, err := tx.List("fence", "", true)
		for _, r := range rs {
			var fs api.FenceSpec
			if json.Unmarshal(r.Spec, &fs) == nil {
				out = append(out, fenceRes{res: r, spec: fs})
			}
		}
		return err
	})
	return out, err
}

// activeFence is the host's fence in force (not released), if any.
func activeFence(fences []fenceRes, host string) *fenceRes {
	for i := range fences {
		if fences[i].spec.Host == host && !fences[i].spec.Released {
			return &fences[i]
		}
	}
	return nil
}

// fence commits a fence of host: its Ceph client addresses (from its last
// report) and its registered address, each as a whole IP.
func (c *Controller) fence(h api.Host, rep api.HostReport, fences []fenceRes) error {
	var addrs []string
	add := func(a string) {
		if ip := storagespec.AddrIP(a); ip != "" && !slices.Contains(addrs, ip) {
			addrs = append(addrs, ip)
		}
	}
	if rep.Storage != nil {
		for _, a := range rep.Storage.ClientAddrs {
			add(a)
		}
	}
	add(h.Addr)
	// One past the highest number of the host's fences: pruned ones leave
	// gaps, and a name is never reused while an older fence keeps it.
	n := 1
	for _, f := range fences {
		var i int
		if f.spec.Host == h.Name {
			if _, err := fmt.Sscanf(strings.TrimPrefix(f.res.Name, h.Name+"-"), "%d", &i); err == nil && i >= n {
				n = i + 1
			}
		}
	}
	name := fmt.Sprintf("%s-%d", h.Name, n)
	spec := api.FenceSpec{Host: h.Name, Addrs: addrs, ExpirySeconds: int(c.cfg.FenceExpiry.Seconds()), DeadSince: h.StateSince,
		Reason: fmt.Sprintf("dead in gossip since %s (grace %s)", h.StateSince.UTC().Format(time.RFC3339), c.cfg.Grace)}
	epoch, err := c.write(api.Resource{Kind: "fence", Name: name}, &spec, registry.Admission{})
	if err != nil {
		return fmt.Errorf("fence host %s: %w", h.Name, err)
	}
	c.log.Warn("host dead past the grace: fence committed", "host", h.Name, "fence", name, "addrs", addrs,
		"dead_since", h.StateSince, "epoch", epoch)
	return nil
}

// recorded is when the active storage controller recorded f in force.
func (c *Controller) recorded(f fenceRes) (time.Time, error) {
	var at time.Time
	err := c.store.View(func(tx *store.Tx) error {
		var err error
		at, err = registry.RecordedFence(tx, f.res.Name, f.spec.Host)
		return err
	})
	return at, err
}

// write admits and commits one system write of r with spec; a stored
// resource is the Prev. It returns the epoch of the commit.
func (c *Controller) write(r api.Resource, spec any, base registry.Admission) (uint64, error) {
	g, err := c.guard()
	if err != nil {
		return 0, err
	}
	return write(c.store, c.reg, c.hosts, g, r, spec, base)
}

// guard is the lease the controller's commits go in under, or
// errLeaseLost when the controller runs under a hold that is gone (Pass
// called outside Run, as tests do, acts unguarded). The check here only
// saves work: the store refuses a commit whose hold expired in between.
func (c *Controller) guard() (store.LeaseGuard, error) {
	c.mu.Lock()
	h := c.hold
	c.mu.Unlock()
	if h == nil {
		return store.LeaseGuard{}, nil
	}
	select {
	case <-h.Lost():
		return store.LeaseGuard{}, errLeaseLost
	default:
		return store.LeaseGuard{Key: h.Key(), Rev: h.Token()}, nil
	}
}

// write commits r with spec, admitted as a system write, under the lease
// g (zero: unguarded).
func write(st *store.Store, reg *registry.Registry, hosts func() []api.Host, g store.LeaseGuard, r api.Resource, spec any, base registry.Admission) (uint64, error) {
	k, ok := reg.Get(r.Kind)
	if !ok {
		return 0, fmt.Errorf("no kind %q", r.Kind)
	}
	epoch, _, err := st.Update(func(tx *store.Tx) error {
		tx.Under(g)
		a := base
		a.Tx, a.Admin, a.System, a.Settings, a.Scheduler = tx, true, true, reg.Settings, reg.Scheduler
		a.Hosts = hosts
		if a.Hosts == nil {
			a.Hosts = func() []api.Host { return nil }
		}
		if prev, err := tx.Get(r.Key()); err == nil {
			a.Prev = &prev
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		res := api.Resource{Kind: r.Kind, Project: r.Project, Name: r.Name}
		if err := k.Admit(&a, &res, spec); err != nil {
			return err
		}
		buf, err := json.Marshal(spec)
		if err != nil {
			return err
		}
		res.Spec = buf
		_, _, err = tx.Put(res)
		return err
	})
	return epoch, err
}

// facts are the hosts' physical networks and L2 drivers, for placing
// routers and DHCP where they can run.
func facts(reports map[string]api.HostReport) *contract.Facts {
	f := &contract.Facts{Physnets: map[string][]string{}, L2Drivers: map[string]string{}}
	for h, rep := range reports {
		if rep.Physnets != nil {
			f.Physnets[h] = rep.Physnets
		}
		if rep.Network != nil && rep.Network.L2Driver != "" {
			f.L2Drivers[h] = rep.Network.L2Driver
		}
	}
	return f
}

// evacuate moves what the fenced host ran: instances (each its own commit,
// a refused one tried again after Retry), then routers and DHCP servers.
func (c *Controller) evacuate(host, fence string, hosts []api.Host, reports map[string]api.HostReport) error {
	instances, err := placedOn(c.store, host, "instance")
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range instances {
		errs = append(errs, c.moveInstance(r, host, fence))
	}
	// A router or DHCP server that cannot move (no alive host bridges
	// its physnet) is tried again after Retry, not every pass.
	nk := api.Key{Kind: "network-move", Name: host}
	c.mu.Lock()
	last, failed := c.tried[nk]
	c.mu.Unlock()
	if failed && c.now().Sub(last) < c.cfg.Retry {
		return errors.Join(errs...)
	}
	g, err := c.guard()
	if err != nil {
		return err
	}
	moved, epoch, err := moveNetwork(c.store, c.reg, c.hosts, g, host, reports)
	c.mu.Lock()
	if err != nil {
		c.tried[nk] = c.now()
	} else {
		delete(c.tried, nk)
	}
	c.mu.Unlock()
	if len(moved) > 0 {
		c.noteMove(host, epoch)
		c.log.Warn("routers and DHCP moved off a fenced host", "moved", moved, "from", host, "fence", fence, "epoch", epoch)
	}
	return errors.Join(append(errs, err)...)
}

// placedOn lists the resources of kind placed on host (an instance's or a
// router's host, a network's DHCP host), by key.
func placedOn(st *store.Store, host string, kinds ...string) ([]api.Resource, error) {
	var out []api.Resource
	err := st.View(func(tx *store.Tx) error {
		for _, kind := range kinds {
			rs, err := tx.List(kind, "", true)
			if err != nil {
				return err
			}
			for _, r := range rs {
				var on struct {
					Host     string `json:"host"`
					DHCPHost string `json:"dhcp_host"`
				}
				_ = json.Unmarshal(r.Spec, &on)
				if (kind != "network" && on.Host == host) || (kind == "network" && on.DHCPHost == host) {
					out = append(out, r)
				}
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Key().String() < out[j].Key().String() })
	return out, err
}

// MoveNetworkOff places the routers and DHCP servers on host on other
// alive, undrained hosts (a router only where its physnet is bridged),
// each in a commit of its own with the same ports, MACs and addresses:
// for a fenced host, and for a drained one being emptied. It returns what
// moved.
func MoveNetworkOff(st *store.Store, reg *registry.Registry, hosts func() []api.Host, host string) ([]string, error) {
	reports, err := st.Reports()
	if err != nil {
		return nil, err
	}
	moved, _, err := moveNetwork(st, reg, hosts, store.LeaseGuard{}, host, reports)
	return moved, err
}

func moveNetwork(st *store.Store, reg *registry.Registry, hosts func() []api.Host, g store.LeaseGuard, host string, reports map[string]api.HostReport) ([]string, uint64, error) {
	rs, err := placedOn(st, host, "router", "network")
	if err != nil {
		return nil, 0, err
	}
	var moved []string
	var last uint64
	var errs []error
	ev := registry.Admission{Evacuate: host, Facts: facts(reports)}
	for _, r := range rs {
		epoch, err := write(st, reg, hosts, g, r, decodeSpec(r), ev)
		if err != nil {
			errs = append(errs, fmt.Errorf("move %s off host %s: %w", r.Key(), host, err))
			continue
		}
		moved, last = append(moved, r.Key().String()), epoch
	}
	return moved, last, errors.Join(errs...)
}

func decodeSpec(r api.Resource) any {
	var spec any
	switch r.Kind {
	case "router":
		spec = &api.RouterSpec{}
	default:
		spec = &api.NetworkSpec{}
	}
	_ = json.Unmarshal(r.Spec, spec)
	return spec
}

func (c *Controller) noteMove(host string, epoch uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if epoch > c.moved[host] {
		c.moved[host] = epoch
	}
}

// moveInstance appends an evacuation to the instance's spec: admission
// checks the fence is recorded, the disks are in Ceph and nothing dirty
// was left in the dead host's cache, and places it through the scheduler.
func (c *Controller) moveInstance(r api.Resource, host, fence string) error {
	k := r.Key()
	c.mu.Lock()
	last, was := c.tried[k]
	c.mu.Unlock()
	if was && c.now().Sub(last) < c.cfg.Retry {
		return nil
	}
	var spec api.InstanceSpec
	if err := json.Unmarshal(r.Spec, &spec); err != nil {
		return err
	}
	spec.Evacuations = append(slices.Clone(spec.Evacuations), api.Evacuation{From: host, Fence: fence})
	epoch, err := c.write(r, &spec, registry.Admission{})
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if !was {
			c.log.Warn("instance on a fenced host not moved", "instance", k.String(), "host", host, "why", err)
		}
		c.tried[k] = c.now()
		return nil // its placement status says why; retried after Retry
	}
	delete(c.tried, k)
	if epoch > c.moved[host] {
		c.moved[host] = epoch
	}
	c.log.Warn("instance evacuated from a fenced host", "instance", k.String(), "from", host, "to", spec.Host, "fence", fence, "epoch", epoch)
	return nil
}

// releaseIfClean releases the fence of a host that is back: alive, and
// its latest report (sent since it came back) shows it applied every move
// off it and holds no instance placed elsewhere now.
func (c *Controller) releaseIfClean(h api.Host, rep api.HostReport, f *fenceRes) error {
	if rep.Host == "" || rep.Reported.Before(h.StateSince) {
		return nil
	}
	c.mu.Lock()
	need, known := c.moved[h.Name]
	c.mu.Unlock()
	if !known {
		need = f.res.Epoch // after a coordinator restart: at least the fence
	}
	if rep.AppliedEpoch < need {
		return nil
	}
	var stale []string
	err := c.store.View(func(tx *store.Tx) error {
		for _, rr := range rep.Resources {
			if rr.Kind != "instance" {
				continue
			}
			res, err := tx.Get(rr.Key)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			var s api.InstanceSpec
			if json.Unmarshal(res.Spec, &s) == nil && s.Host != h.Name {
				stale = append(stale, rr.Key.String())
			}
		}
		return nil
	})
	if err != nil || len(stale) > 0 {
		return err
	}
	spec := f.spec
	spec.Released, spec.ReleasedAt = true, c.now().UTC()
	spec.Reason = strings.TrimSpace(spec.Reason + "; released: back and clean at epoch " + fmt.Sprint(rep.AppliedEpoch))
	if len(spec.Reason) > registry.MaxDescriptionLen {
		spec.Reason = spec.Reason[:registry.MaxDescriptionLen]
	}
	if _, err := c.write(f.res, &spec, registry.Admission{}); err != nil {
		return fmt.Errorf("release fence %s: %w", f.res.Name, err)
	}
	c.log.Info("host back and clean: fence released", "host", h.Name, "fence", f.res.Name, "applied_epoch", rep.AppliedEpoch)
	return c.restartHeld(h.Name, f.res.Name)
}

// restartHeld starts again what the fence held on its host: instances
// that were not moved (a local disk, dirty cache blocks, no room
// elsewhere) and want to run. Their guests died with the host, or lost
// their Ceph clients to the blocklist, and a guest that stopped outside
// Strata stays stopped until its instance changes: each gets a start (its
// Starts counter bumped, in a commit of its own) and a placement status
// that says why.
func (c *Controller) restartHeld(host, fence string) error {
	rs, err := placedOn(c.store, host, "instance")
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range rs {
		var spec api.InstanceSpec
		if err := json.Unmarshal(r.Spec, &spec); err != nil || spec.Power == api.PowerStopped {
			continue
		}
		spec.Starts++
		if _, err := c.write(r, &spec, registry.Admission{}); err != nil {
			errs = append(errs, fmt.Errorf("restart %s held on host %s: %w", r.Key(), host, err))
			continue
		}
		msg := fmt.Sprintf("restarted on %s: fence %s released, the host is back", host, fence)
		_, _, err := c.store.Update(func(tx *store.Tx) error {
			tx.SetPlacement(r.Key(), api.PlacementStatus{State: api.PlacementPlaced, Host: host, Message: msg, Updated: c.now().UTC()})
			return nil
		})
		errs = append(errs, err)
		c.mu.Lock()
		delete(c.tried, r.Key())
		c.mu.Unlock()
		c.log.Warn("instance held on a fenced host restarted there", "instance", r.Key().String(), "host", host, "fence", fence)
	}
	return errors.Join(errs...)
}

// prune deletes a released fence older than the retention, once the
// storage controller has lifted its blocklist entries (reported it
// released at its epoch).
func (c *Controller) prune(f fenceRes) error {
	at := f.spec.ReleasedAt
	if at.IsZero() {
		at = f.res.Updated // released before releases were stamped
	}
	if c.now().Sub(at) < c.cfg.Retention {
		return nil
	}
	g, err := c.guard()
	if err != nil {
		return err
	}
	_, _, err = c.store.Update(func(tx *store.Tx) error {
		tx.Under(g)
		cur, err := tx.Get(f.res.Key())
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if cur.Epoch != f.res.Epoch {
			return nil // changed since the pass read it: next pass
		}
		lifted := false
		for _, st := range tx.HostStatuses(cur.Key()) {
			lifted = lifted || (st.State == api.FenceReleased && st.Epoch == cur.Epoch)
		}
		if !lifted {
			return nil
		}
		pruned, err := tx.Delete(cur.Key())
		if pruned {
			c.log.Info("released fence pruned", "fence", f.res.Name, "host", f.spec.Host, "released_at", at, "retention", c.cfg.Retention)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("prune fence %s: %w", f.res.Name, err)
	}
	return nil
}
