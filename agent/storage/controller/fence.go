package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/rbd"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// fence is one fence of the plan.
type fence struct {
	Key   api.Key
	Epoch uint64
	Spec  api.FenceSpec
}

// fencesOf reads the plan's fences, oldest name first.
func fencesOf(s *plan.Snapshot) ([]fence, error) {
	var out []fence
	for _, r := range s.Kind("fence") {
		var fs api.FenceSpec
		if err := json.Unmarshal(r.Spec, &fs); err != nil {
			return nil, fmt.Errorf("fence %s: %w", r.Name, err)
		}
		out = append(out, fence{Key: r.Key(), Epoch: r.Epoch, Spec: fs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key.Name < out[j].Key.Name })
	return out, nil
}

// PlanChanged hands FenceLoop the newest plan; it never blocks (the
// agent calls it as each plan arrives, daemon.Agent.OnPlan).
func (c *Controller) PlanChanged(s *plan.Snapshot) {
	for {
		select {
		case c.plans <- s:
			return
		default:
		}
		select {
		case <-c.plans: // an older plan not taken yet: the newer replaces it
		default:
		}
	}
}

// FenceLoop fences at once each new fence in force that a plan brings,
// while the reconcile pass may still be busy: a pass that reads a volume
// the dead host had open can wait for Ceph's own watch timeout (30 s)
// for that host, and the fence, which ends that wait, must not queue
// behind it. The pass applies fences too (renewals, releases); this
// loop only does what is urgent, then reports at once. It runs until
// ctx ends.
func (c *Controller) FenceLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-c.plans:
			if err := c.fenceNew(s); err != nil {
				c.cfg.Logger.Warn("fence from the new plan not applied; the next pass retries", "epoch", s.Epoch, "err", err)
			}
		}
	}
}

// fenceNew applies the plan's fences when one in force is not yet
// held by this controller, under the same lease and epoch as a pass. A
// standby whose plan fences the lease holder's host takes the lease
// first (renew breaks it): the fence must not wait for it to expire.
func (c *Controller) fenceNew(s *plan.Snapshot) error {
	if !s.Storage {
		return nil
	}
	fences, err := fencesOf(s)
	if err != nil {
		return err
	}
	c.mu.Lock()
	urgent := false
	c.fenced, c.fencedEpoch = map[string]bool{}, s.Epoch
	for _, f := range fences {
		if !f.Spec.Released {
			c.fenced[f.Spec.Host] = true
			urgent = urgent || c.fenceTimes[f.Key].IsZero()
		}
	}
	c.mu.Unlock()
	if !urgent {
		return nil
	}
	if !c.Active() {
		if err := c.renew(); err != nil || !c.Active() {
			return err
		}
	}
	p, err := c.conn()
	if err != nil {
		return err
	}
	if err := p.FenceEpoch(c.cfg.LeasePool, LeaseObject, s.Epoch); err != nil {
		if errors.Is(err, rbd.ErrStaleEpoch) {
			return nil // a pass already acted on a newer plan
		}
		return err
	}
	d, err := desired(s)
	if err != nil {
		return err
	}
	c.fence(p, s.Epoch, fences, d.Volumes)
	c.cfg.ReportSoon()
	return nil
}

// fence applies fences (of the plan at epoch) and keeps their statuses
// for the report, unless a newer plan's are there already.
func (c *Controller) fence(p Pool, epoch uint64, fences []fence, vols []volume) []api.ResourceReport {
	c.fenceMu.Lock()
	defer c.fenceMu.Unlock()
	reports := c.applyFences(p, fences, vols)
	c.mu.Lock()
	if epoch >= c.fenceEpoch {
		c.fenceReports, c.fenceEpoch = reports, epoch
	}
	c.mu.Unlock()
	return reports
}

// entryOf is how the blocklist lists addr: a bare IP as ip:0/0 (every
// client of that address).
func entryOf(addr string) string {
	if ip, err := netip.ParseAddr(addr); err == nil {
		if ip.Is6() {
			return "[" + ip.String() + "]:0/0"
		}
		return ip.String() + ":0/0"
	}
	return addr
}

// applyFences keeps every holding fence in force and lifts the released
// ones. A holding fence: each of the host's addresses on the OSD
// blocklist (added again when missing or past half its expiry), then every
// planned volume's lock and watch held from those addresses blocklisted by
// its exact client address and its lock broken, so that another host can
// claim the volume at once. Only then is the fence reported "fenced"; any
// failure is reported as the fence's error and retried next pass.
func (c *Controller) applyFences(p Pool, fences []fence, vols []volume) []api.ResourceReport {
	if len(fences) == 0 {
		return nil
	}
	now := time.Now().UTC()
	var reports []api.ResourceReport
	listed, lerr := p.Blocklisted()
	holding := holdingIPs(fences)
	for _, f := range fences {
		rs := api.ResourceStatus{Epoch: f.Epoch, Updated: now}
		det := api.FenceDetail{Controller: c.cfg.Host}
		var err error
		if lerr != nil {
			err = lerr
		} else if f.Spec.Released {
			err = c.lift(p, f, listed, holding)
		} else {
			err = c.hold(p, f, listed, vols, now, &det)
		}
		took := time.Since(now)
		c.mu.Lock()
		if c.fenceTimes == nil {
			c.fenceTimes = map[api.Key]time.Time{}
		}
		switch {
		case err != nil:
			rs.State, rs.Message = StateError, err.Error()
		case f.Spec.Released:
			rs.State, det.ReleasedAt = api.FenceReleased, now
		default:
			rs.State = api.FenceFenced
			if c.fenceTimes[f.Key].IsZero() {
				c.fenceTimes[f.Key] = now
				c.cfg.Logger.Warn("host fenced: its Ceph clients are blocklisted and its locks broken",
					"host", f.Spec.Host, "fence", f.Key.Name, "addrs", det.Blocklisted, "locks", det.BrokenLocks,
					"took", took.Round(time.Millisecond), "epoch", f.Epoch)
			}
			det.FencedAt = c.fenceTimes[f.Key]
		}
		c.mu.Unlock()
		rs.Detail, _ = json.Marshal(det)
		reports = append(reports, api.ResourceReport{Key: f.Key, ResourceStatus: rs})
	}
	return reports
}

func expiryOf(f fence) time.Duration {
	if f.Spec.ExpirySeconds <= 0 {
		return 24 * time.Hour
	}
	return time.Duration(f.Spec.ExpirySeconds) * time.Second
}

// hold puts the fence's addresses on the blocklist and breaks the locks
// of planned volumes held from them.
func (c *Controller) hold(p Pool, f fence, listed map[string]time.Time, vols []volume, now time.Time, det *api.FenceDetail) error {
	expiry := expiryOf(f)
	ips := map[string]bool{}
	ensure := func(addr string) error {
		e := entryOf(addr)
		if until, ok := listed[e]; !ok || until.Before(now.Add(expiry/2)) {
			if err := p.BlocklistFor(addr, expiry); err != nil {
				return err
			}
			listed[e] = now.Add(expiry)
		}
		if !slices.Contains(det.Blocklisted, e) {
			det.Blocklisted = append(det.Blocklisted, e)
		}
		return nil
	}
	for _, a := range f.Spec.Addrs {
		if ip := storagespec.AddrIP(a); ip != "" {
			ips[ip] = true
		}
		if err := ensure(a); err != nil {
			return err
		}
	}
	det.Expires = now.Add(expiry)
	if len(ips) == 0 {
		return nil
	}
	for _, v := range vols {
		if v.Err != "" {
			continue
		}
		watchers, owners, err := p.Holders(v.Ref)
		if err != nil {
			continue // not made yet, or gone: nothing of the host's to break
		}
		for _, w := range watchers {
			if ips[storagespec.AddrIP(w)] {
				// The exact client too: the watch goes at once.
				if err := ensure(w); err != nil {
					return err
				}
			}
		}
		for _, o := range owners {
			if !ips[storagespec.AddrIP(o)] {
				continue
			}
			if err := ensure(o); err != nil {
				return err
			}
			if err := p.BreakLock(v.Ref, o); err != nil {
				return err
			}
			det.BrokenLocks = append(det.BrokenLocks, v.Ref.String()+": "+o)
		}
	}
	return nil
}

// lift removes a released fence's entries: the host came back clean.
func (c *Controller) lift(p Pool, f fence, listed map[string]time.Time, holding map[string]bool) error {
	ips := map[string]bool{}
	for _, a := range f.Spec.Addrs {
		if ip := storagespec.AddrIP(a); !holding[ip] {
			ips[ip] = true
		}
	}
	// Entries of the host's exact clients (added while breaking locks)
	// go too; only this host's addresses are ever touched.
	var gone []string
	for e := range listed {
		if ip := storagespec.AddrIP(e); ip != "" && ips[ip] {
			gone = append(gone, e)
		}
	}
	sort.Strings(gone)
	for _, e := range gone {
		if err := p.Unblocklist(e); err != nil && !strings.Contains(err.Error(), "not blocklisted") {
			return err
		}
		delete(listed, e)
	}
	return nil
}

// holdingIPs are the addresses of the fences still in force: a released
// fence never lifts the entries of a newer fence of the same host.
func holdingIPs(fences []fence) map[string]bool {
	out := map[string]bool{}
	for _, f := range fences {
		if f.Spec.Released {
			continue
		}
		for _, a := range f.Spec.Addrs {
			out[storagespec.AddrIP(a)] = true
		}
	}
	return out
}
