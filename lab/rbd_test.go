package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/compute/virttest"
	"github.com/strata-infra/strata/internal/cephtest"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
)

// cephLab is a lab whose hosts all run compute (a private libvirtd each)
// and are configured for the package's shared Ceph cluster (each runs the
// storage controller; one is active). Images, volumes and instances live
// in project "r".
type cephLab struct {
	*Lab
	cluster *cephtest.Cluster
	lvs     map[int]*Libvirtd
	guest   Guest
}

// newCephLab brings up a lab of n hosts on the shared cluster, in pools
// of its own (the cluster outlives the test, and RBD names derive from
// project and name), with flavor tiny, a default volume type and
// project demo-a. Each host's libvirtd lives in a test directory of its
// own, stopped (with its guests) before the lab goes down. coordArgs are
// the coordinator's extra flags.
func newCephLab(t testing.TB, n int, coordArgs ...string) *cephLab {
	t.Helper()
	return newCephLabLV(t, n, false, coordArgs...)
}

// newCephLabLV is newCephLab; with inLab the libvirtds live where make
// lab puts them, under the lab's directory (lv1..lvN), and the lab's Down
// alone must stop them and their guests (they are stopped beforehand
// only when the test failed).
func newCephLabLV(t testing.TB, n int, inLab bool, coordArgs ...string) *cephLab {
	t.Helper()
	virttest.Require(t)
	begin := time.Now()
	cluster := cephtest.Require(t)
	ctx := context.Background()
	keyring, err := cluster.CreateUser(ctx, "client.strata", "mon", StorageMonCaps, "osd", "profile rbd", "mgr", "profile rbd")
	if err != nil {
		t.Fatal(err)
	}
	tag := testenv.Tag('c')
	images, volumes := "i"+tag, "v"+tag
	for _, p := range []string{images, volumes} {
		if err := cluster.CreatePool(ctx, p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cluster.Ceph(ctx, "osd", "pool", "delete", p, p, "--yes-i-really-really-mean-it") })
	}
	t.Logf("[%s] shared Ceph cluster ready, pools %s and %s made", time.Since(begin).Round(100*time.Millisecond), images, volumes)
	l := testLabConfig(t, Config{Hosts: n, RetainDeltas: 10000, Ceph: &Ceph{MonHost: cluster.MonHost(), User: "strata",
		Keyring: keyring, ImagesPool: images, VolumesPool: volumes, Route: cluster.Addr}, CoordinatorExtraArgs: coordArgs})
	start := time.Now()
	g, err := BuildGuest(repoRoot(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cl := &cephLab{Lab: l, cluster: cluster, lvs: map[int]*Libvirtd{}, guest: g}
	for i := 1; i <= n; i++ {
		dir := filepath.Join(l.Dir, fmt.Sprintf("lv%d", i))
		if !inLab {
			var err error
			if dir, err = testenv.MkdirTemp(fmt.Sprintf("stlv%d", i)); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
		}
		lv, err := l.StartLibvirtd(i, dir)
		if err != nil {
			t.Fatal(err)
		}
		// Runs before the lab's own cleanup: guests and libvirtd go first.
		t.Cleanup(func() {
			if inLab && !t.Failed() {
				return
			}
			if err := lv.Stop(); err != nil {
				t.Errorf("stop libvirtd of h%d: %v", lv.Host, err)
			}
		})
		cl.lvs[i] = lv
	}
	t.Logf("[%s] guest built and %d libvirtds up (qemu probed) in %s", time.Since(begin).Round(100*time.Millisecond), n, time.Since(start).Round(time.Millisecond))
	// Each host reaches the others' libvirtds for live migrations.
	mig, err := MigrationArgs(filepath.Join(l.Dir, "libvirt-peers"), cl.lvs, l.HostName)
	if err != nil {
		t.Fatal(err)
	}
	l.AgentExtraArgs = func(i int) []string { return append(ComputeArgs(cl.lvs[i], g, 2*time.Second), mig...) }
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	waitCLI(t, l, 60*time.Second, "hosts up", AllAliveAndConverged(n))
	t.Logf("[%s] coordinator and %d agents up and converged", time.Since(begin).Round(100*time.Millisecond), n)
	applyManifest(t, l, `
kind: flavor
name: tiny
spec: {vcpus: 1, ram_mib: 160, disk_gib: 1}
---
kind: volumetype
name: default
spec: {pool: `+volumes+`}
---
kind: project
name: `+demoProject+`
`)
	return cl
}

// resource reads a project resource of kind (plural, as in the API path).
func (cl *cephLab) resource(t testing.TB, kind, name string) (api.Resource, error) {
	t.Helper()
	c, err := cl.Client()
	if err != nil {
		t.Fatal(err)
	}
	var r api.Resource
	err = c.Do(context.Background(), "GET", "/v1/projects/"+demoProject+"/"+kind+"/"+name, nil, &r)
	return r, err
}

// waitResource waits until the host (or controller) reports the resource
// at its current epoch or later in state.
func (cl *cephLab) waitResource(t testing.TB, kind, name, state string, limit time.Duration) api.Resource {
	t.Helper()
	var r api.Resource
	testenv.WaitTrue(t, limit, fmt.Sprintf("%s %s %s", kind, name, state), func() bool {
		var err error
		r, err = cl.resource(t, kind, name)
		return err == nil && r.Status != nil && r.Status.Epoch >= r.Epoch && r.Status.State == state
	})
	return r
}

// console is the console log of instance name on host i, read on the
// host (the reported tail lags by a report period).
func (cl *cephLab) console(i int, name string) string {
	b, _ := os.ReadFile(filepath.Join(cl.Dir, cl.HostName(i), "compute", "instances", api.InstanceID(demoProject, name), "console.log"))
	return string(b)
}

// waitConsole waits for the n-th match of re on the console of instance
// name on host i. A TCG boot beside other guests on a loaded machine
// takes minutes: the wait is long, and its failure shows the console.
func (cl *cephLab) waitConsole(t testing.TB, i int, name string, re *regexp.Regexp, n int) []string {
	t.Helper()
	var m [][]string
	var console string
	_, err := testenv.Poll(480*time.Second, func() error {
		console = cl.console(i, name)
		if m = re.FindAllStringSubmatch(console, -1); len(m) < n {
			return fmt.Errorf("%d matches", len(m))
		}
		return nil
	})
	if err != nil {
		// What the guest did: its CPU time and disk requests, and qemu's log.
		stats, _ := cl.lvs[i].Virsh("domstats", "--cpu-total", "--block", "--state")
		logs, _ := filepath.Glob(filepath.Join(cl.lvs[i].Dir, "log", "qemu", "*.log"))
		var qlog []byte
		for _, f := range logs {
			b, _ := os.ReadFile(f)
			qlog = append(append(qlog, "== "+filepath.Base(f)+"\n"...), tail(b, 1500)...)
		}
		t.Fatalf("console of %s on h%d to show %q %d times: %v; the console:\n%s\n--- domstats ---\n%s\n--- qemu logs ---\n%s",
			name, i, re, n, err, tail([]byte(console), 2000), stats, qlog)
	}
	return m[n-1]
}

// TestLabInstanceOnRBD: two lab hosts on the shared Ceph cluster. The
// lab's storage demo runs first (DemoStorage, as make lab does): the test
// guest imported with stratactl, an instance booting from a copy-on-write
// clone of it, a volume hot-plugged into it that the guest writes a
// record to, a snapshot and a clone. Then make lab's drain step
// (DemoMaintenance): its host is drained with --migrate live, the guest
// moves to the other host without booting again, and the host is enabled.
// Then the instance stops and starts there and the guest reads the record
// back; the volume is detached and attached to a new instance on the
// first host, drained and enabled again (booting from its own clone),
// whose guest reads the same record: the data went through qemu's librbd
// on one host and came back on the other. Deleting the instances
// removes their root clones.
func TestLabInstanceOnRBD(t *testing.T) {
	cl := newCephLab(t, 2)
	detail := func(r api.Resource) api.VolumeDetail {
		var d api.VolumeDetail
		if r.Status != nil {
			json.Unmarshal(r.Status.Detail, &d)
		}
		return d
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// What the hosts saw: consoles, and the agents' warnings in full
		// (the lab's log dump shows only tails).
		for i := 1; i <= 2; i++ {
			for _, vm := range []string{demoVM, "vm2"} {
				if c := cl.console(i, vm); c != "" {
					t.Logf("--- console of %s on h%d ---\n%s", vm, i, c)
				}
			}
			b, _ := os.ReadFile(cl.logFile(cl.HostName(i)))
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
					t.Logf("h%d: %s", i, line)
				}
			}
		}
	})

	start := time.Now()
	var out strings.Builder
	err := cl.DemoStorage(context.Background(), &out, cl.guest.Image)
	t.Logf("the storage demo (%s):\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatal(err)
	}
	r, err := cl.resource(t, "instances", demoVM)
	if err != nil {
		t.Fatal(err)
	}
	var s api.InstanceSpec
	json.Unmarshal(r.Spec, &s)
	here, other := 1, 2
	if s.Host == "h2" {
		here, other = 2, 1
	}
	root := cl.waitResource(t, "volumes", s.RootVolume, "available", 30*time.Second)
	if d := detail(root); !strings.HasPrefix(d.Parent, cl.Ceph.ImagesPool+"/image-"+DemoRBDImage+"@") || d.Pool != cl.Ceph.VolumesPool {
		t.Fatalf("%s's root volume %s: %+v; want a clone of %s/image-%s in %s", demoVM, s.RootVolume, d, cl.Ceph.ImagesPool, DemoRBDImage, cl.Ceph.VolumesPool)
	}
	clone := cl.waitResource(t, "volumes", "data-clone", "available", 30*time.Second)
	if d := detail(clone); !strings.Contains(d.Parent, "@") || d.Depth != 1 {
		t.Fatalf("data-clone: %+v; want a clone (depth 1) of data's snapshot", d)
	}
	wrote := cl.waitConsole(t, here, demoVM, regexp.MustCompile(`strata-guest: volume vdb wrote (strata-record \S+)`), 1)
	record := wrote[1]
	t.Logf("the guest on h%d wrote %q to volume data", here, record)
	holds := regexp.MustCompile(`strata-guest: volume vdb holds ` + regexp.QuoteMeta(record) + `\b`)

	// make lab's drain step: the guest, its volume plugged, moves live
	// to the other host, which then holds it; it does not boot there.
	start = time.Now()
	out.Reset()
	err = cl.DemoMaintenance(context.Background(), &out)
	t.Logf("the maintenance demo (%s):\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatal(err)
	}
	if r = cl.waitResource(t, "instances", demoVM, "running", 60*time.Second); r.Status.Host != cl.HostName(other) {
		t.Fatalf("after the drain of h%d, %s runs on %s", here, demoVM, r.Status.Host)
	}
	// The moved domain keeps its console path, under the first host's
	// instances directory (the lab's hosts have one each; real hosts
	// share the path).
	if c := cl.console(here, demoVM) + cl.console(other, demoVM); strings.Count(c, "strata-guest: boot ") != 1 {
		t.Fatalf("the guest booted anew on h%d (a live move keeps it running):\n%s", other, c)
	}
	// From here on it runs on other, its console still in here's
	// directory; vm2 goes to here, drained and enabled again.

	stratactl(t, cl.Lab, nil, "instances", "stop", "-p", demoProject, demoVM)
	cl.waitResource(t, "instances", demoVM, "stopped", 60*time.Second)
	stratactl(t, cl.Lab, nil, "instances", "start", "-p", demoProject, demoVM)
	cl.waitResource(t, "instances", demoVM, "running", 60*time.Second)
	cl.waitConsole(t, here, demoVM, holds, 1)
	t.Logf("after a stop and start on h%d the guest reads the record back", other)

	stratactl(t, cl.Lab, nil, "instances", "detach-volume", "-p", demoProject, demoVM, "data")
	// Asked of Ceph itself: the controller's status of the volume may
	// predate the detach.
	data := cl.Ceph.VolumesPool + "/" + detail(cl.waitResource(t, "volumes", "data", "available", 30*time.Second)).RBDImage
	testenv.WaitTrue(t, 60*time.Second, "qemu to let go of volume data", func() bool {
		out, err := cl.cluster.RBD(context.Background(), "status", data)
		return err == nil && strings.Contains(string(out), "Watchers: none")
	})
	moved := time.Now()
	stratactl(t, cl.Lab, nil, "instances", "create", "-p", demoProject, "vm2", "--flavor", "tiny", "--image", DemoRBDImage,
		"--host", cl.HostName(here), "--volume", "data")
	cl.waitResource(t, "instances", "vm2", "running", 120*time.Second)
	cl.waitConsole(t, here, "vm2", holds, 1)
	t.Logf("vm2 on h%d reads the record from volume data %s after the create", here, time.Since(moved).Round(time.Millisecond))
	if strings.Contains(cl.console(here, "vm2"), "volume vdb wrote") {
		t.Fatalf("the guest on h%d found no record on the volume and wrote one", here)
	}

	roots := []string{detail(root).RBDImage, detail(cl.waitResource(t, "volumes", "vm2-root", "available", 30*time.Second)).RBDImage}
	for _, vm := range []string{demoVM, "vm2"} {
		stratactl(t, cl.Lab, nil, "instances", "delete", "-p", demoProject, vm)
	}
	testenv.WaitTrue(t, 90*time.Second, "the instances' root volumes gone, from the API and from Ceph", func() bool {
		for _, n := range []string{s.RootVolume, "vm2-root"} {
			if _, err := cl.resource(t, "volumes", n); err == nil {
				return false
			}
		}
		out, err := cl.cluster.RBD(context.Background(), "ls", cl.Ceph.VolumesPool)
		return err == nil && !strings.Contains(string(out), roots[0]) && !strings.Contains(string(out), roots[1])
	})
}

// TestLabOwnCeph is what make lab and make lab-down do with Ceph: the
// lab's own cluster comes up on the lab bridge (the address its hosts
// reach), detached from the process that started it, with pid files
// naming it; the agents are configured for it and the storage controller
// of one becomes active; a second Up reuses it; Down stops every daemon
// by its pid file and removes its files.
func TestLabOwnCeph(t *testing.T) {
	if why := cephtest.Available(); why != "" {
		testenv.Missing(t, "Ceph", why)
	}
	l := testLabConfig(t, Config{Hosts: 1, RetainDeltas: 100, RunCeph: true})
	ctx := context.Background()
	start := time.Now()
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("lab of 1 host with its own Ceph up in %s", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() { cephtest.StopDir(l.CephDir()) }) // also when a check below fails
	if !cephtest.RunningIn(l.CephDir()) || l.Ceph == nil || !strings.Contains(l.Ceph.MonHost, l.BridgeAddr().String()+":") {
		t.Fatalf("ceph running %v, client config %+v; want it up on the lab bridge %s", cephtest.RunningIn(l.CephDir()), l.Ceph, l.BridgeAddr())
	}
	waitCLI(t, l, 60*time.Second, "host up", AllAliveAndConverged(1))
	testenv.WaitTrue(t, 120*time.Second, "h1's storage controller to report", func() bool {
		rep := report(t, l, "h1")
		for _, s := range rep.Subsystems {
			if s.Name == "storage" && s.OK {
				return true
			}
		}
		return false
	})
	var h api.Host
	c, _ := l.Client()
	if err := c.Do(ctx, "GET", "/v1/hosts/h1", nil, &h); err != nil || strings.Join(h.Storage, " ") != "rbd:images rbd:volumes" {
		t.Fatalf("h1 announces storage %v (%v), want rbd:images rbd:volumes", h.Storage, err)
	}
	again := &Lab{Config: l.Config}
	again.Ceph = nil
	if reused, _, err := again.UpCeph(ctx); err != nil || !reused {
		t.Fatalf("second UpCeph: reused %v, %v; want the running cluster reused", reused, err)
	}
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	if cephtest.RunningIn(l.CephDir()) {
		t.Fatal("ceph still running after Down")
	}
	if _, err := os.Stat(l.CephDir()); !os.IsNotExist(err) {
		t.Fatalf("ceph dir after Down: %v", err)
	}
}
