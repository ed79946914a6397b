// Package controller is the storage controller that runs inside
// strata-agent on hosts configured for it: it makes the plan's volumes and
// volume snapshots real in Ceph (create, clone, snapshot, resize, flatten,
// delete) and reports their status. Any number of hosts may run it; one is
// active at a time, the holder of an expiring RADOS lock (the lease), and
// every pass is fenced by the cluster epoch so that a controller fed an
// older plan than one already acted on refuses to act.
package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/agent/storage/cephconn"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/rbd"
)

// Pool is what the controller does in Ceph; *rbd.Conn implements it.
type Pool interface {
	Create(r rbd.Ref, size uint64, owner string) error
	Clone(parent, child rbd.Ref, owner string) error
	Resize(r rbd.Ref, size uint64) error
	Flatten(r rbd.Ref) error
	Remove(r rbd.Ref, owner string, flattenChildren bool) error
	Snapshot(r rbd.Ref, protect bool) error
	RemoveSnapshot(r rbd.Ref) error
	Status(r rbd.Ref) (rbd.ImageStatus, error)
	List(pool string) ([]string, error)
	Lease(pool, oid, cookie string, ttl time.Duration) (bool, rbd.LeaseHolder, error)
	ReleaseLease(pool, oid, cookie string) error
	BreakLease(pool, oid string, holder rbd.LeaseHolder) error
	FenceEpoch(pool, oid string, epoch uint64) error
	ActedEpoch(pool, oid string) (uint64, error)
	Blocklist(addr string) error
	BlocklistFor(addr string, expire time.Duration) error
	Unblocklist(addr string) error
	Blocklisted() (map[string]time.Time, error)
	BreakLock(r rbd.Ref, owner string) error
	Holders(r rbd.Ref) (watchers, owners []string, err error)
	PoolQuota(pool string) (uint64, error)
	Close()
}

// LeaseObject is the RADOS object whose lock is the controller lease.
const LeaseObject = "strata.storage-controller"

// Config configures a controller.
type Config struct {
	Host string // this host: the lease cookie
	// Connect opens the Ceph connection; it is called again after a failure.
	Connect func() (Pool, error)
	// LeasePool holds the lease object (the volumes pool).
	LeasePool string
	// LeaseTTL is how long a lease outlives its holder's last renewal.
	LeaseTTL time.Duration
	Logger   *slog.Logger
	// Kick asks the runner for a pass (when the lease is won).
	Kick func()
	// InTouch says whether this host's agent is in touch with the
	// coordinator (gossip sees it alive). A controller cut off from it
	// gives the lease up, so that the controllers on the coordinator's
	// side can act on the fences it commits; nil is always in touch.
	InTouch func() bool
	// ProgressInterval is how often a long flatten logs how far it got
	// (10 s when 0).
	ProgressInterval time.Duration
	// ReportSoon asks the agent to send its status report now: a fence
	// recorded between passes goes to the coordinator at once.
	ReportSoon func()
}

// Controller is the storage subsystem's reconciler.
type Controller struct {
	cfg Config

	mu       sync.Mutex
	ceph     cephconn.Lazy[Pool]
	active   bool
	holder   rbd.LeaseHolder // the other holder while standby
	lastErr  string
	statuses []api.ResourceReport
	// fenceTimes is when this controller first held each fence.
	fenceTimes map[api.Key]time.Time
	// fenceReports are the fences' statuses from the newest plan fenced
	// (fenceEpoch), by a pass or by FenceLoop, whichever came last.
	fenceReports []api.ResourceReport
	fenceEpoch   uint64
	// fenceMu keeps a pass and FenceLoop from applying fences at once.
	fenceMu sync.Mutex
	// plans hands FenceLoop the newest plan (PlanChanged).
	plans chan *plan.Snapshot
	// fenced are the hosts the newest plan (at fencedEpoch) fences: a
	// lease one of them holds is broken, not waited out.
	fenced      map[string]bool
	fencedEpoch uint64
}

// New returns a controller; register it with the runner and run Renew in
// the background.
func New(cfg Config) (*Controller, error) {
	if cfg.Host == "" || cfg.Connect == nil || cfg.LeasePool == "" {
		return nil, errors.New("storage controller: host, connect and lease pool are required")
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Kick == nil {
		cfg.Kick = func() {}
	}
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = 10 * time.Second
	}
	if cfg.ReportSoon == nil {
		cfg.ReportSoon = func() {}
	}
	return &Controller{cfg: cfg, ceph: cephconn.New(cfg.Connect), plans: make(chan *plan.Snapshot, 1)}, nil
}

// Name is the subsystem's name.
func (c *Controller) Name() string { return "storage" }

// Active reports whether this host holds the lease.
func (c *Controller) Active() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active
}

func (c *Controller) conn() (Pool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ceph.Get()
}

// dropConn forgets a connection that failed, so the next call reconnects;
// the lease goes with it.
func (c *Controller) dropConn(p Pool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ceph.Drop(p) {
		c.active = false
	}
}

// renew takes or renews the lease once. Winning it from another holder
// blocklists that holder's client first, so that a paused controller can
// never write again.
func (c *Controller) renew() error {
	if c.cfg.InTouch != nil && !c.cfg.InTouch() {
		c.standDown()
		return nil
	}
	p, err := c.conn()
	if err != nil {
		c.setErr(fmt.Sprintf("ceph unreachable: %v", err))
		return err
	}
	held, holder, err := p.Lease(c.cfg.LeasePool, LeaseObject, c.cfg.Host, c.cfg.LeaseTTL)
	if err != nil {
		c.dropConn(p)
		c.setErr(fmt.Sprintf("ceph unreachable: %v", err))
		return err
	}
	c.mu.Lock()
	fenced := holder.Cookie != "" && holder.Cookie != c.cfg.Host && holder.Addr != "" && c.fenced[holder.Cookie]
	fencedEpoch := c.fencedEpoch
	c.mu.Unlock()
	if !held && fenced {
		// Only on a plan no older than the holder acted on: a coordinator
		// serving an older copy of the state may still fence a host that
		// is back, and its live controller must not be cut off.
		acted, err := p.ActedEpoch(c.cfg.LeasePool, LeaseObject)
		if err != nil {
			c.dropConn(p)
			return err
		}
		if acted > fencedEpoch {
			c.cfg.Logger.Warn("a stale plan fences the storage controller's host: its lease is left alone",
				"holder", holder.Cookie, "plan_epoch", fencedEpoch, "acted_epoch", acted)
			fenced = false
		}
	}
	if !held && fenced {
		// The holder's host is fenced by the plan: the coordinator saw it
		// dead past the grace with a majority alive, and its fence can
		// only be applied by the lease holder. Cut its client off first,
		// so that it never acts again, then take the lease now instead of
		// when it expires.
		if err := p.Blocklist(holder.Addr); err != nil {
			return fmt.Errorf("take the lease from fenced host %s: %w", holder.Cookie, err)
		}
		if err := p.BreakLease(c.cfg.LeasePool, LeaseObject, holder); err != nil {
			return err
		}
		c.cfg.Logger.Warn("storage controller lease taken from a fenced host", "holder", holder.Cookie, "addr", holder.Addr)
		if held, holder, err = p.Lease(c.cfg.LeasePool, LeaseObject, c.cfg.Host, c.cfg.LeaseTTL); err != nil {
			c.dropConn(p)
			return err
		}
	}
	c.mu.Lock()
	was, prev := c.active, c.holder
	c.active = held
	if !held {
		c.holder = holder
	}
	c.mu.Unlock()
	if held && !was {
		if prev.Addr != "" && prev.Cookie != c.cfg.Host {
			if err := p.Blocklist(prev.Addr); err != nil {
				c.cfg.Logger.Warn("blocklist the previous storage controller", "holder", prev.Cookie, "addr", prev.Addr, "err", err)
			}
		}
		c.cfg.Logger.Info("storage controller active", "previous", prev.Cookie)
		c.cfg.Kick()
	}
	if !held && was {
		c.cfg.Logger.Warn("storage controller lease lost", "holder", holder.Cookie)
	}
	return nil
}

// standDown gives the lease up while the agent is cut off from the
// coordinator: a partitioned controller must not hold the lease that the
// fence of its own host needs.
func (c *Controller) standDown() {
	c.mu.Lock()
	p, was := c.ceph.Open(), c.active
	c.active = false
	c.mu.Unlock()
	if was && p != nil {
		_ = p.ReleaseLease(c.cfg.LeasePool, LeaseObject, c.cfg.Host)
		c.cfg.Logger.Warn("storage controller stands down: the coordinator is out of reach")
	}
}

// Renew keeps the lease until ctx ends, renewing it three times per TTL,
// and releases it on the way out so another host takes over at once.
func (c *Controller) Renew(ctx context.Context) {
	t := time.NewTicker(c.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		_ = c.renew()
		select {
		case <-ctx.Done():
			c.mu.Lock()
			p, active := c.ceph.Open(), c.active
			c.active = false
			c.mu.Unlock()
			if p != nil && active {
				_ = p.ReleaseLease(c.cfg.LeasePool, LeaseObject, c.cfg.Host)
			}
			return
		case <-t.C:
		}
	}
}

func (c *Controller) setErr(s string) {
	c.mu.Lock()
	c.lastErr = s
	c.mu.Unlock()
}

// Ensure makes the plan's volumes and snapshots in Ceph when this host is
// the active controller; a standby does nothing. One volume failing is
// reported in its own status and retried; the others still converge.
func (c *Controller) Ensure(ctx context.Context, p *plan.Host) error {
	return c.ensure(ctx, p.Snapshot)
}

// Prune deletes what the plan no longer wants, after compute has pruned
// (a volume still open by a domain is refused, never deleted under it).
func (c *Controller) Prune(ctx context.Context, p *plan.Host) error {
	return c.prunePass(p.Snapshot)
}

// Reconcile is Ensure then Prune on a plan snapshot.
func (c *Controller) Reconcile(ctx context.Context, s *plan.Snapshot) error {
	if err := c.ensure(ctx, s); err != nil {
		return err
	}
	return c.prunePass(s)
}

func (c *Controller) ensure(ctx context.Context, s *plan.Snapshot) error {
	if err := c.renew(); err != nil {
		c.markUnreachable(err)
		return err
	}
	if !c.Active() {
		c.mu.Lock()
		c.statuses, c.fenceReports = nil, nil
		c.mu.Unlock()
		return nil
	}
	if !s.Storage {
		return c.notStoragePlan(s)
	}
	p, d, err := c.actOn(s)
	if err != nil {
		return err
	}
	fences, err := fencesOf(s)
	if err != nil {
		return err
	}
	// Fences first: a dead host's volumes are released for others the
	// moment its fence is in force. (FenceLoop fences a new one sooner.)
	freports := c.fence(p, s.Epoch, fences, d.Volumes)
	reports, failed := c.apply(ctx, p, d)
	for _, r := range freports {
		if r.State == StateError {
			failed = append(failed, fmt.Sprintf("%s: %s", r.Key, r.Message))
		}
	}
	reports = append(reports, c.quotas(p, d)...)
	c.mu.Lock()
	c.statuses, c.lastErr = reports, ""
	c.mu.Unlock()
	if len(failed) > 0 {
		return fmt.Errorf("%d storage operations failed: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}

func (c *Controller) prunePass(s *plan.Snapshot) error {
	if !c.Active() || !s.Storage {
		return nil // never delete by a plan that does not hold every volume
	}
	// Fenced again: the lease may have moved since Ensure.
	p, d, err := c.actOn(s)
	if err != nil {
		return err
	}
	return c.prune(p, d)
}

// actOn records in Ceph that this controller acts on the plan's epoch
// (refused when a holder before it acted on a newer plan) and returns the
// connection and what the plan wants.
func (c *Controller) actOn(s *plan.Snapshot) (Pool, desiredState, error) {
	p, err := c.conn()
	if err != nil {
		return nil, desiredState{}, err
	}
	if err := p.FenceEpoch(c.cfg.LeasePool, LeaseObject, s.Epoch); err != nil {
		return nil, desiredState{}, err
	}
	d, err := desired(s)
	if err != nil {
		return nil, desiredState{}, err
	}
	return p, d, nil
}

// notStoragePlan refuses a plan that is not the storage plan: it holds
// only this host's volumes, so acting on it would delete every other
// host's images. The host asked for the storage plan (its agent sets
// ?storage=true); a coordinator that answers without it is older than
// this agent, and the controller waits for it.
func (c *Controller) notStoragePlan(s *plan.Snapshot) error {
	msg := fmt.Sprintf("plan at epoch %d is not the storage plan (a coordinator too old to serve it?): the storage controller does nothing until it is", s.Epoch)
	c.mu.Lock()
	c.statuses, c.fenceReports, c.lastErr = nil, nil, msg
	c.mu.Unlock()
	return errors.New(msg)
}

// markUnreachable turns the last statuses into errors that say so: the
// resources stay as they were in Ceph, and the next pass retries.
func (c *Controller) markUnreachable(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.statuses {
		c.statuses[i].State, c.statuses[i].Message = "error", "ceph unreachable: "+err.Error()
	}
	for i := range c.fenceReports {
		c.fenceReports[i].State, c.fenceReports[i].Message = "error", "ceph unreachable: "+err.Error()
	}
}

// Report adds the volumes' and snapshots' statuses while this host is the
// active controller.
func (c *Controller) Report(rep *api.HostReport) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rep.StorageController = true
	rep.Resources = append(rep.Resources, c.statuses...)
	rep.Resources = append(rep.Resources, c.fenceReports...)
}

// quotas reports each volume type's pool quota, which the coordinator
// checks volume sizes against.
func (c *Controller) quotas(p Pool, d desiredState) []api.ResourceReport {
	now := time.Now().UTC()
	var out []api.ResourceReport
	for _, t := range d.Types {
		rs := api.ResourceStatus{State: StateAvailable, Epoch: t.Epoch, Updated: now}
		q, err := p.PoolQuota(t.Pool)
		if err != nil {
			rs.State, rs.Message = StateError, err.Error()
		} else {
			rs.Detail, _ = json.Marshal(api.PoolDetail{Pool: t.Pool, QuotaMaxBytes: q, Controller: c.cfg.Host})
		}
		out = append(out, api.ResourceReport{Key: t.Key, ResourceStatus: rs})
	}
	return out
}

func detail(host string, st rbd.ImageStatus) json.RawMessage {
	d := api.VolumeDetail{Pool: st.Pool, RBDImage: st.Image, SizeBytes: st.Size, UsedBytes: st.Used, Depth: st.Depth,
		Watchers: st.Watchers, LockOwners: st.LockOwners, Controller: host}
	if st.Parent != nil {
		d.Parent = st.Parent.String()
	}
	for _, s := range st.Snapshots {
		d.Snapshots = append(d.Snapshots, s.Name)
	}
	b, _ := json.Marshal(d)
	return b
}

// isStrata reports whether an image name is one Strata derives.
func isStrata(name string) bool {
	return strings.HasPrefix(name, "volume-") || strings.HasPrefix(name, "image-")
}
