package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/rbd"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// deadHost is a network namespace with a veth into the cluster's bridge:
// a host of its own address whose Ceph clients a fence cuts off.
type deadHost struct {
	ns      string
	ip      netip.Addr
	user    string
	keyring string
}

func newDeadHost(t *testing.T, f *fixture, octet byte) *deadHost {
	t.Helper()
	testenv.RequireRoot(t, "a namespace host and a veth into the Ceph bridge")
	tag := testenv.Tag('f')
	h := &deadHost{ns: tag + "n"}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", h.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", h.ns).Run() })
	run("ip", "link", "add", tag+"h", "type", "veth", "peer", "name", tag+"g")
	t.Cleanup(func() { exec.Command("ip", "link", "del", tag+"h").Run() })
	run("ip", "link", "set", tag+"h", "master", f.cl.Bridge, "up")
	run("ip", "link", "set", tag+"g", "netns", h.ns)
	a := f.cl.Addr.Addr().As4()
	a[3] = octet
	h.ip = netip.AddrFrom4(a)
	run("ip", "-n", h.ns, "addr", "add", netip.PrefixFrom(h.ip, f.cl.Addr.Bits()).String(), "dev", tag+"g")
	run("ip", "-n", h.ns, "link", "set", tag+"g", "up")
	run("ip", "-n", h.ns, "link", "set", "lo", "up")
	h.user = "s17dead"
	k, err := f.cl.CreateUser(context.Background(), "client."+h.user, "mon", "profile rbd", "osd", "profile rbd")
	if err != nil {
		t.Fatal(err)
	}
	h.keyring = k
	return h
}

// rbd runs the rbd CLI in the host's namespace as its user.
func (h *deadHost) rbd(ctx context.Context, f *fixture, args ...string) *exec.Cmd {
	full := append([]string{"netns", "exec", h.ns, "rbd", "-c", f.cl.Conf, "--id", h.user, "--keyring", h.keyring}, args...)
	return exec.CommandContext(ctx, "ip", full...)
}

// fencingController is a controller whose cephx user may fence whole
// addresses and lift fences (more than the rbd profile grants).
func fencingController(t *testing.T, f *fixture, host string) *Controller {
	t.Helper()
	keyring, err := f.cl.CreateUser(context.Background(), "client.s17fence",
		"mon", `profile rbd, allow command "osd blocklist", allow command "osd blocklist ls"`, "osd", "profile rbd")
	if err != nil {
		t.Fatal(err)
	}
	cfg := rbd.Config{MonHost: f.cfg.MonHost, User: "s17fence", Keyring: keyring, Timeout: 10 * time.Second}
	c, err := New(Config{Host: host, LeasePool: f.pool, LeaseTTL: 10 * time.Second, Logger: slog.New(slog.DiscardHandler),
		Connect: func() (Pool, error) {
			conn, err := rbd.Connect(cfg)
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

// TestFenceCutsOffTheDeadHost: a "host" in a namespace of its own writes
// a volume (an `rbd bench` holding its exclusive lock and watch). A fence
// of that host's address puts the whole address on the OSD blocklist with
// an expiry, breaks the lock, and is reported "fenced" with what it did;
// the writer's writes fail from then on, and another host claims the
// volume without waiting for Ceph to time the dead watch out. Releasing
// the fence lifts the entries and the host's clients work again.
func TestFenceCutsOffTheDeadHost(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dead := newDeadHost(t, f, 91)
	c := fencingController(t, f, "ctl")
	vt := res{"volumetype", "", "default", api.VolumeTypeSpec{Pool: f.pool}}
	vol := res{"volume", "p", "root", api.VolumeSpec{SizeGiB: 1}}
	if err := c.Reconcile(ctx, planOf(t, 1, vt, vol)); err != nil {
		t.Fatal(err)
	}
	ref := rbd.Ref{Pool: f.pool, Image: storagespec.VolumeImage("p", "root")}

	bctx, stop := context.WithCancel(ctx)
	bench := dead.rbd(bctx, f, "bench", "--io-type", "write", "--io-size", "4096", "--io-threads", "1",
		"--io-total", "100G", "--io-pattern", "rand", ref.String())
	var out strings.Builder
	bench.Stdout, bench.Stderr = &out, &out
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- bench.Wait() }()
	t.Cleanup(func() { stop(); <-exited })
	var owner string
	testenv.WaitTrue(t, 60*time.Second, "the dead host's writer to take the exclusive lock", func() bool {
		st, err := f.conn.Status(ref)
		if err == nil && len(st.LockOwners) == 1 && storagespec.AddrIP(st.LockOwners[0]) == dead.ip.String() {
			owner = st.LockOwners[0]
		}
		return owner != ""
	})

	fence := res{"fence", "", "h9-1", api.FenceSpec{Host: "h9", Addrs: []string{dead.ip.String()}, ExpirySeconds: 3600}}
	start := time.Now()
	if err := c.Reconcile(ctx, planOf(t, 2, vt, vol, fence)); err != nil {
		t.Fatal(err)
	}
	rs, ok := statusOf(c, "h9-1")
	var det api.FenceDetail
	json.Unmarshal(rs.Detail, &det)
	whole := dead.ip.String() + ":0/0"
	if !ok || rs.State != api.FenceFenced || det.FencedAt.IsZero() || len(det.BrokenLocks) != 1 ||
		!strings.Contains(det.BrokenLocks[0], owner) || !contains(det.Blocklisted, whole) {
		t.Fatalf("fence status %+v detail %+v; want fenced, %s blocklisted, the lock of %s broken", rs, det, whole, owner)
	}
	listed := blocklist(t, f)
	until, ok := listed[whole]
	if !ok || until.Before(time.Now().Add(50*time.Minute)) {
		t.Fatalf("blocklist %v: want %s for about an hour", listed, whole)
	}
	if _, owners, err := f.conn.Holders(ref); err != nil || len(owners) != 0 {
		t.Fatalf("lock owners after the fence: %v %v", owners, err)
	}

	// The old writer cannot write any more: it fails and ends.
	select {
	case err := <-exited:
		exited <- err
		t.Logf("the fenced writer ended %.1fs after the fence: %v", time.Since(start).Seconds(), err)
	case <-time.After(testenv.Scale(90 * time.Second)):
		t.Fatalf("the fenced writer still runs 90s after the fence:\n%s", out.String())
	}
	// Nor can a new client of that address.
	wctx, cancel := context.WithTimeout(ctx, testenv.Scale(20*time.Second))
	if b, err := dead.rbd(wctx, f, "bench", "--io-type", "write", "--io-size", "4096", "--io-total", "4096", ref.String()).CombinedOutput(); err == nil {
		t.Fatalf("a new writer on the fenced host wrote:\n%s", b)
	}
	cancel()
	// Another host claims the volume: the fence took the dead watch away.
	testenv.WaitFor(t, 60*time.Second, "the volume to be claimable by another host", func() error {
		_, err := f.conn.Claim(ref)
		return err
	})
	t.Logf("claimed by another host %.1fs after the fence (Ceph's own watch timeout is 30 s)", time.Since(start).Seconds())

	// A second pass changes nothing and still says fenced.
	if err := c.Reconcile(ctx, planOf(t, 3, vt, vol, fence)); err != nil {
		t.Fatal(err)
	}
	if rs, _ := statusOf(c, "h9-1"); rs.State != api.FenceFenced {
		t.Fatalf("second pass: %+v", rs)
	}

	// The host came back clean: the fence is released and lifted.
	fence.spec = api.FenceSpec{Host: "h9", Addrs: []string{dead.ip.String()}, ExpirySeconds: 3600, Released: true}
	if err := c.Reconcile(ctx, planOf(t, 4, vt, vol, fence)); err != nil {
		t.Fatal(err)
	}
	if rs, _ := statusOf(c, "h9-1"); rs.State != api.FenceReleased {
		t.Fatalf("released fence: %+v", rs)
	}
	for e := range blocklist(t, f) {
		if storagespec.AddrIP(e) == dead.ip.String() {
			t.Fatalf("entry %s still on the blocklist after the release", e)
		}
	}
	testenv.WaitFor(t, 60*time.Second, "the returned host's client to read the volume's pool", func() error {
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		b, err := dead.rbd(rctx, f, "ls", f.pool).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, b)
		}
		return nil
	})
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

func blocklist(t *testing.T, f *fixture) map[string]time.Time {
	t.Helper()
	c := fencingController(t, f, "reader")
	p, err := c.conn()
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Blocklisted()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustStatusOf(t *testing.T, f *fixture, r rbd.Ref) rbd.ImageStatus {
	t.Helper()
	st, err := f.conn.Status(r)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
