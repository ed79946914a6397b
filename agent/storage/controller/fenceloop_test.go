package controller

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/rbd"
)

// stuckStatus is the real pool whose image reads hang until released,
// as a read of a volume a dead host's qemu had open hangs until Ceph
// times that client's watch out (30 s).
type stuckStatus struct {
	Pool
	stuck   chan struct{} // closed when a read first hangs
	release chan struct{}
	once    *atomic.Bool
}

func (s stuckStatus) Status(r rbd.Ref) (rbd.ImageStatus, error) {
	if s.once.CompareAndSwap(false, true) {
		close(s.stuck)
	}
	<-s.release
	return s.Pool.Status(r)
}

// TestFenceDoesNotWaitForThePass: a new fence in the plan is applied and
// reported at once by FenceLoop while the reconcile pass of the plan
// before is stuck reading a volume (in the lab, a pass reading the dead
// host's volumes held the fence back ~25 s). The stuck pass, once it goes
// on, stops at the newer epoch; the next pass keeps the fence.
func TestFenceDoesNotWaitForThePass(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := fencingController(t, f, "ctl")
	vt := res{"volumetype", "", "default", api.VolumeTypeSpec{Pool: f.pool}}
	vol := res{"volume", "p", "v1", api.VolumeSpec{SizeGiB: 1}}
	if err := c.Reconcile(ctx, planOf(t, 1, vt, vol)); err != nil {
		t.Fatal(err)
	}
	// From here on the controller's image reads hang until released.
	hang := stuckStatus{Pool: c.ceph.Open(), stuck: make(chan struct{}), release: make(chan struct{}), once: new(atomic.Bool)}
	c.mu.Lock()
	c.ceph.Set(hang)
	c.mu.Unlock()
	released := false
	release := func() {
		if !released {
			released = true
			close(hang.release)
		}
	}
	defer release()
	var reports atomic.Int32
	c.cfg.ReportSoon = func() { reports.Add(1) }
	go c.FenceLoop(ctx)

	// A TEST-NET address: nothing of the cluster's is cut off.
	const addr = "192.0.2.77"
	t.Cleanup(func() {
		if err := hang.Pool.Unblocklist(entryOf(addr)); err != nil {
			t.Errorf("lift the test's blocklist entry: %v", err)
		}
	})
	fence := res{"fence", "", "h9-1", api.FenceSpec{Host: "h9", Addrs: []string{addr}, ExpirySeconds: 600}}
	pass := make(chan error, 1)
	go func() { pass <- c.Reconcile(ctx, planOf(t, 2, vt, vol)) }()
	<-hang.stuck
	s := planOf(t, 3, vt, vol, fence)
	start := time.Now()
	c.PlanChanged(s)
	var det api.FenceDetail
	testenv.WaitTrue(t, testenv.Scale(60*time.Second), "the fence recorded while the pass is stuck", func() bool {
		rs, ok := statusOf(c, "h9-1")
		if !ok || rs.State != api.FenceFenced {
			return false
		}
		return json.Unmarshal(rs.Detail, &det) == nil && !det.FencedAt.IsZero()
	})
	select {
	case err := <-pass:
		t.Fatalf("the pass ended (%v) before its read was released", err)
	default:
	}
	if reports.Load() == 0 {
		t.Fatal("the fence was recorded but no report was asked for")
	}
	if !contains(det.Blocklisted, entryOf(addr)) {
		t.Fatalf("fence detail %+v: want %s blocklisted", det, entryOf(addr))
	}
	t.Logf("fenced %.2fs after the plan arrived, the pass still stuck", time.Since(start).Seconds())

	release()
	if err := <-pass; err != nil && !errors.Is(err, rbd.ErrStaleEpoch) {
		t.Fatalf("the stuck pass: %v", err)
	}
	if err := c.Reconcile(ctx, s); err != nil {
		t.Fatal(err)
	}
	if rs, _ := statusOf(c, "h9-1"); rs.State != api.FenceFenced {
		t.Fatalf("after the pass: %+v", rs)
	}
	if _, ok := blocklist(t, f)[entryOf(addr)]; !ok {
		t.Fatalf("%s not on the blocklist", entryOf(addr))
	}
}

// TestFenceTakesTheLeaseOfAFencedHolder: the lease holder's host is fenced
// by the plan (it died holding the lease); the standby that gets the plan
// blocklists the holder's client, breaks its lease and applies the fence
// at once, without waiting for the lease to expire. The old holder's
// client can no longer renew.
func TestFenceTakesTheLeaseOfAFencedHolder(t *testing.T) {
	f := newFixture(t)
	const addr = "192.0.2.78" // the fence's own address: TEST-NET
	a, b, holderAddr, vt := holderAndStandby(t, f, "ha", "hb", 1, addr)

	s := planOf(t, 2, vt, res{"fence", "", "ha-1", api.FenceSpec{Host: "ha", Addrs: []string{addr}, ExpirySeconds: 600}})
	if err := b.fenceNew(s); err != nil {
		t.Fatal(err)
	}
	if !b.Active() {
		t.Fatal("hb did not take the lease of the fenced holder")
	}
	rs, ok := statusOf(b, "ha-1")
	if !ok || rs.State != api.FenceFenced {
		t.Fatalf("fence status %+v; want fenced by hb", rs)
	}
	bl := blocklist(t, f)
	if _, ok := bl[holderAddr]; !ok {
		t.Fatalf("the old holder's client %s is not on the blocklist %v", holderAddr, bl)
	}
	// The old holder's client is cut off: its renewal fails, or finds
	// the lease taken.
	if err := a.renew(); err == nil && a.Active() {
		t.Fatal("the fenced holder still renews the lease")
	}
}

// TestStalePlanLeavesTheHolderAlone: a standby fed an older plan than the
// lease holder acted on (a coordinator serving an older copy of the
// state) that still fences the holder's host does not cut the holder off:
// no blocklist, no lease taken, and the holder goes on renewing. The same
// fence in a plan no older than the holder's does take it.
func TestStalePlanLeavesTheHolderAlone(t *testing.T) {
	f := newFixture(t)
	const addr = "192.0.2.79" // the fence's own address: TEST-NET
	a, b, holderAddr, vt := holderAndStandby(t, f, "hs", "ht", 7, addr)
	fence := res{"fence", "", "hs-1", api.FenceSpec{Host: "hs", Addrs: []string{addr}, ExpirySeconds: 600}}

	if err := b.fenceNew(planOf(t, 6, vt, fence)); err != nil {
		t.Fatal(err)
	}
	if b.Active() {
		t.Fatal("ht took the lease on a plan older than the holder's")
	}
	if _, ok := blocklist(t, f)[holderAddr]; ok {
		t.Fatalf("the holder's client %s was blocklisted on a stale plan", holderAddr)
	}
	if err := a.renew(); err != nil || !a.Active() {
		t.Fatalf("the holder no longer renews after a stale plan: %v", err)
	}

	if err := b.fenceNew(planOf(t, 8, vt, fence)); err != nil {
		t.Fatal(err)
	}
	if !b.Active() {
		t.Fatal("ht did not take the lease on a current plan that fences the holder")
	}
	if _, ok := blocklist(t, f)[holderAddr]; !ok {
		t.Fatalf("the fenced holder's client %s is not on the blocklist", holderAddr)
	}
}

// holderAndStandby makes two controllers on the plan at epoch, holder
// active and standby not, with lease TTLs far beyond the test; the
// holder's client address and the fence address addr are lifted off the
// blocklist when the test ends. It returns the plan's volume type too.
func holderAndStandby(t *testing.T, f *fixture, holder, standby string, epoch uint64, addr string) (a, b *Controller, holderAddr string, vt res) {
	t.Helper()
	ctx := context.Background()
	a, b = fencingController(t, f, holder), fencingController(t, f, standby)
	a.cfg.LeaseTTL, b.cfg.LeaseTTL = 5*time.Minute, 5*time.Minute
	vt = res{"volumetype", "", "default", api.VolumeTypeSpec{Pool: f.pool}}
	if err := a.Reconcile(ctx, planOf(t, epoch, vt)); err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(ctx, planOf(t, epoch, vt)); err != nil {
		t.Fatal(err)
	}
	if !a.Active() || b.Active() {
		t.Fatalf("active: %s %v, %s %v; want %s alone", holder, a.Active(), standby, b.Active(), holder)
	}
	pa, err := a.conn()
	if err != nil {
		t.Fatal(err)
	}
	holderAddr = pa.(*rbd.Conn).Addr()
	t.Cleanup(func() {
		pb, err := b.conn()
		if err != nil {
			t.Error(err)
			return
		}
		for _, e := range []string{holderAddr, entryOf(addr)} {
			if err := pb.Unblocklist(e); err != nil {
				t.Errorf("lift the test's blocklist entry %s: %v", e, err)
			}
		}
	})
	return a, b, holderAddr, vt
}
