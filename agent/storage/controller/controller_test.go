package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/strata-infra/strata/internal/testenv"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/internal/cephtest"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/rbd"
	"github.com/strata-infra/strata/pkg/storagespec"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	cephtest.Main(m, "s13c", "images", "volumes")
}

var runCounter atomic.Int64

// fixture is one test's view of the shared cluster: its own pool (so that
// tests never see each other's volumes or leases) and an rbd config.
type fixture struct {
	cl   *cephtest.Cluster
	cfg  rbd.Config
	pool string
	conn *rbd.Conn
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	cl := cephtest.Require(t)
	if !rbd.Supported() {
		testenv.Missing(t, "Ceph support in this build", rbd.ErrNoCeph.Error())
	}
	ctx := context.Background()
	pool := fmt.Sprintf("s13-%d-%d", os.Getpid(), runCounter.Add(1))
	if err := cl.CreatePool(ctx, pool); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Ceph(ctx, "osd", "pool", "rm", pool, pool, "--yes-i-really-really-mean-it") })
	keyring, err := cl.CreateUser(ctx, "client.strata", "mon", "profile rbd", "osd", "profile rbd", "mgr", "profile rbd")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{cl: cl, pool: pool, cfg: rbd.Config{MonHost: cl.MonHost(), User: "strata", Keyring: keyring, Timeout: 10 * time.Second}}
	if f.conn, err = rbd.Connect(f.cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.conn.Close)
	return f
}

func (f *fixture) controller(t *testing.T, host string, ttl time.Duration) *Controller {
	t.Helper()
	c, err := New(Config{Host: host, LeasePool: f.pool, LeaseTTL: ttl, Logger: slog.New(slog.DiscardHandler),
		Connect: func() (Pool, error) {
			conn, err := rbd.Connect(f.cfg)
			if err != nil {
				return nil, err
			}
			return conn, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.mu.Lock()
		c.ceph.Close()
		c.mu.Unlock()
	})
	return c
}

// planOf builds a plan snapshot from kind/project/name/spec quadruples.
type res struct {
	kind, project, name string
	spec                any
}

func planOf(t *testing.T, epoch uint64, rs ...res) *plan.Snapshot {
	t.Helper()
	s := &plan.Snapshot{Epoch: epoch, Storage: true}
	for _, r := range rs {
		b, err := json.Marshal(r.spec)
		if err != nil {
			t.Fatal(err)
		}
		s.Resources = append(s.Resources, api.Resource{Kind: r.kind, Project: r.project, Name: r.name, Epoch: epoch, Spec: b})
	}
	return s
}

func (f *fixture) status(t *testing.T, project, name string) rbd.ImageStatus {
	t.Helper()
	st, err := f.conn.Status(rbd.Ref{Pool: f.pool, Image: storagespec.VolumeImage(project, name)})
	if err != nil {
		t.Fatalf("volume %s/%s: %v", project, name, err)
	}
	return st
}

func statusOf(c *Controller, name string) (api.ResourceStatus, bool) {
	var rep api.HostReport
	c.Report(&rep)
	for _, r := range rep.Resources {
		if r.Name == name {
			return r.ResourceStatus, true
		}
	}
	return api.ResourceStatus{}, false
}

// TestControllerVolumes drives the controller through a plan's life: an
// empty volume, a clone of an image, a snapshot, clones of the snapshot and
// of a volume, growth, flattening, then deletes; every pass twice to show
// the second changes nothing, and an image Strata does not own untouched.
func TestControllerVolumes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.controller(t, "h1", 5*time.Second)

	// An image in Ceph, as `stratactl images import` leaves it.
	src := filepath.Join(t.TempDir(), "img.raw")
	os.WriteFile(src, []byte("a bootable image, honestly\n"), 0o644)
	if err := os.Truncate(src, 4<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.conn.ImportFile(ctx, src, "raw", rbd.Ref{Pool: f.pool, Image: storagespec.ImageName("tiny")}, storagespec.Owner("image", "", "tiny"), t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	foreign := rbd.Ref{Pool: f.pool, Image: "volume-not-ours"}
	if err := f.conn.Create(foreign, 1<<20, "someone-else"); err != nil {
		t.Fatal(err)
	}

	base := []res{
		{"volumetype", "", "default", api.VolumeTypeSpec{Pool: f.pool}},
		{"image", "", "tiny", api.ImageSpec{Format: "raw", Path: "/x", Pool: f.pool, SizeBytes: 4 << 20}},
	}
	pass := func(epoch uint64, rs ...res) {
		t.Helper()
		p := planOf(t, epoch, append(append([]res{}, base...), rs...)...)
		for i := 0; i < 2; i++ {
			if err := c.Reconcile(ctx, p); err != nil {
				t.Fatalf("epoch %d pass %d: %v", epoch, i+1, err)
			}
		}
	}
	v1 := res{"volume", "p", "v1", api.VolumeSpec{SizeGiB: 1}}
	v2 := res{"volume", "p", "v2", api.VolumeSpec{SizeGiB: 1, Image: "tiny"}}
	s1 := res{"volumesnapshot", "p", "s1", api.VolumeSnapshotSpec{Volume: "v1"}}
	v3 := res{"volume", "p", "v3", api.VolumeSpec{SizeGiB: 2, Snapshot: "s1"}}
	v4 := res{"volume", "p", "v4", api.VolumeSpec{SizeGiB: 1, Volume: "v1"}}
	pass(10, v1, v2, s1, v3, v4)
	if !c.Active() {
		t.Fatal("the only controller is not active")
	}
	if st := f.status(t, "p", "v1"); st.Size != storagespec.GiB || st.Parent != nil || len(st.Snapshots) != 2 {
		t.Fatalf("v1: size %d parent %v snapshots %+v", st.Size, st.Parent, st.Snapshots)
	}
	imgSnap := rbd.Ref{Pool: f.pool, Image: storagespec.ImageName("tiny"), Snap: rbd.BaseSnap}
	if st := f.status(t, "p", "v2"); st.Parent == nil || *st.Parent != imgSnap || st.Size != storagespec.GiB || st.Used != 0 {
		t.Fatalf("v2 (from image): parent %v size %d used %d", st.Parent, st.Size, st.Used)
	}
	if st := f.status(t, "p", "v3"); st.Parent == nil || st.Parent.Snap != storagespec.SnapshotName("p", "s1") || st.Size != 2*storagespec.GiB {
		t.Fatalf("v3 (from snapshot): parent %v size %d", st.Parent, st.Size)
	}
	if st := f.status(t, "p", "v4"); st.Parent == nil || st.Parent.Snap != storagespec.CloneSnapshot("p", "v4") {
		t.Fatalf("v4 (from volume): parent %v", st.Parent)
	}
	rs, ok := statusOf(c, "v2")
	var d api.VolumeDetail
	json.Unmarshal(rs.Detail, &d)
	if !ok || rs.State != StateAvailable || d.Parent != imgSnap.String() || d.Controller != "h1" {
		t.Fatalf("v2 status: %+v detail %+v", rs, d)
	}

	// Grow v1, flatten v3.
	v1.spec = api.VolumeSpec{SizeGiB: 3}
	v3.spec = api.VolumeSpec{SizeGiB: 2, Snapshot: "s1", Flatten: true}
	pass(11, v1, v2, s1, v3, v4)
	if st := f.status(t, "p", "v1"); st.Size != 3*storagespec.GiB {
		t.Fatalf("v1 after growing: %d", st.Size)
	}
	if st := f.status(t, "p", "v3"); st.Parent != nil {
		t.Fatalf("v3 after flatten: parent %v", st.Parent)
	}

	// Delete v4 (its clone snapshot on v1 goes with it), then the snapshot
	// s1 and v1, and v2: only v3 (flattened) is left, and the foreign image.
	pass(12, v1, v2, s1, v3)
	if st := f.status(t, "p", "v1"); len(st.Snapshots) != 1 {
		t.Fatalf("v1 snapshots after deleting its clone v4: %+v", st.Snapshots)
	}
	pass(13, v3)
	names, err := f.conn.List(f.pool)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	want := []string{storagespec.ImageName("tiny"), "volume-not-ours", storagespec.VolumeImage("p", "v3")}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("pool after deletes: %v, want %v", names, want)
	}

	// A volume whose type is missing from the plan fails alone: the others
	// still converge and it is reported as an error.
	bad := res{"volume", "p", "bad", api.VolumeSpec{SizeGiB: 1, Type: "gold"}}
	v5 := res{"volume", "p", "v5", api.VolumeSpec{SizeGiB: 1}}
	err = c.Reconcile(ctx, planOf(t, 14, append(append([]res{}, base...), v3, bad, v5)...))
	if err == nil {
		t.Fatal("a volume of an unknown type converged")
	}
	if rs, _ := statusOf(c, "bad"); rs.State != StateError {
		t.Fatalf("bad volume status %+v", rs)
	}
	f.status(t, "p", "v5")

	// An older plan than one acted on is refused (fencing by epoch).
	if err := c.Reconcile(ctx, planOf(t, 9, base...)); !errors.Is(err, rbd.ErrStaleEpoch) {
		t.Fatalf("stale plan: got %v, want ErrStaleEpoch", err)
	}
	f.status(t, "p", "v5") // and nothing was deleted

	// A host's own plan (not the storage plan) holds only the volumes of
	// its instances: acting on it would delete the rest. It is refused.
	own := planOf(t, 15, append(append([]res{}, base...), v3)...)
	own.Storage = false
	if err := c.Reconcile(ctx, own); err == nil || !strings.Contains(err.Error(), "not the storage plan") {
		t.Fatalf("a plan that is not the storage plan: got %v, want a refusal", err)
	}
	f.status(t, "p", "v5") // still there
	if rs, _ := statusOf(c, "v5"); rs.State != "" {
		t.Fatalf("statuses reported from a host plan: %+v", rs)
	}
}

// TestControllerLease: one of two controllers is active; the standby does
// nothing; when the active one stops renewing, the standby takes over after
// the TTL and blocklists the old holder, whose writes then fail.
func TestControllerLease(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// Long enough that a loaded machine's pass never outlasts it; the
	// takeover below waits for expiry, however long.
	ttl := 10 * time.Second
	a, b := f.controller(t, "h1", ttl), f.controller(t, "h2", ttl)
	p := planOf(t, 5, res{"volumetype", "", "default", api.VolumeTypeSpec{Pool: f.pool}},
		res{"volume", "p", "v1", api.VolumeSpec{SizeGiB: 1}})
	if err := a.Reconcile(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(ctx, p); err != nil {
		t.Fatal(err)
	}
	if !a.Active() || b.Active() {
		t.Fatalf("active: a %v b %v, want only a", a.Active(), b.Active())
	}
	if _, ok := statusOf(b, "v1"); ok {
		t.Fatal("the standby reports volumes")
	}
	// a stops renewing (as if its agent hung); b takes over once the lease expires.
	aConn, _ := a.conn()
	start := time.Now()
	deadline := time.Now().Add(ttl + 60*time.Second)
	for !b.Active() {
		if time.Now().After(deadline) {
			t.Fatalf("standby not active %s after the holder stopped renewing", time.Since(start))
		}
		time.Sleep(200 * time.Millisecond)
		if err := b.renew(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("takeover %.1fs after the last renewal (TTL %s)", time.Since(start).Seconds(), ttl)
	p.Epoch = 6
	p2 := planOf(t, 6, res{"volumetype", "", "default", api.VolumeTypeSpec{Pool: f.pool}},
		res{"volume", "p", "v1", api.VolumeSpec{SizeGiB: 1}}, res{"volume", "p", "v2", api.VolumeSpec{SizeGiB: 1}})
	if err := b.Reconcile(ctx, p2); err != nil {
		t.Fatal(err)
	}
	f.status(t, "p", "v2")
	// The old holder is fenced out of the cluster.
	deadline = time.Now().Add(30 * time.Second)
	for {
		err := aConn.Create(rbd.Ref{Pool: f.pool, Image: "volume-fenced"}, 1<<20, "x")
		if err != nil {
			t.Logf("old holder's write refused: %v", err)
			break
		}
		f.conn.Remove(rbd.Ref{Pool: f.pool, Image: "volume-fenced"}, "", false)
		if time.Now().After(deadline) {
			t.Fatal("the old holder can still write after the takeover")
		}
		time.Sleep(500 * time.Millisecond)
	}
}
