package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/cephtest"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
)

// TestMain sweeps up after the package: t.Cleanup does not run after a
// panic or a -timeout. The package's tests that need Ceph share one
// cluster, started at the first that asks (cephtest.Require) and
// stopped here; they share one build of the lab's commands, removed here.
func TestMain(m *testing.M) {
	stop := cephtest.Lazy("s13l", "rbd") // each test makes pools of its own
	testenv.Main(runThenStop{m, func() {
		stop()
		if binaries.dir != "" {
			os.RemoveAll(binaries.dir)
		}
	}})
}

type runThenStop struct {
	m    *testing.M
	stop func()
}

func (r runThenStop) Run() int {
	defer r.stop()
	return r.m.Run()
}

func requireRoot(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t, "creates network namespaces, veths and a bridge")
}

func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..")
}

// binaries is the one build of the lab's commands the package's tests
// share: under load each go build takes a minute, once per test.
var binaries struct {
	once sync.Once
	dir  string
	err  error
}

// buildBinaries compiles the three commands once per test process, in one
// go build, and returns their directory.
func buildBinaries(t testing.TB) string {
	t.Helper()
	binaries.once.Do(func() {
		start := time.Now()
		dir, err := testenv.MkdirTemp("stbin")
		if err != nil {
			binaries.err = err
			return
		}
		binaries.dir = dir
		cmd := exec.Command("go", "build", "-o", dir, "./coordinator/cmd/strata-coordinator", "./agent/cmd/strata-agent", "./coordinator/cmd/stratactl")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			binaries.err = fmt.Errorf("go build the lab's commands: %v\n%s", err, out)
			return
		}
		// With Ceph here, strata-rbd beside the agents, where they look.
		if cephtest.Available() == "" {
			helper, _ := cephtest.Helper()
			if err := os.Link(helper, filepath.Join(dir, "strata-rbd")); err != nil {
				binaries.err = fmt.Errorf("strata-rbd into the lab's commands: %v", err)
				return
			}
		}
		t.Logf("the lab's commands built in %s (once for the package's tests)", time.Since(start).Round(100*time.Millisecond))
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.dir
}

// testLab makes a lab with names and a subnet unique to this process and
// test (see UniqueConfig), and tears it down even on failure, dumping logs
// when the test failed.
func testLab(t testing.TB, hosts, retain int) *Lab {
	t.Helper()
	return testLabConfig(t, Config{Hosts: hosts, RetainDeltas: retain})
}

// testLabConfig is testLab with more of the configuration given (hosts'
// L2 drivers, say).
func testLabConfig(t testing.TB, cfg Config) *Lab {
	t.Helper()
	requireRoot(t)
	cfg.Dir, cfg.BinDir = filepath.Join(testenv.SharedTempDir(t), "lab"), buildBinaries(t)
	l, err := New(UniqueConfig(t, 't', cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// STRATA_LAB_LOGS=1 shows the logs of a passing test too.
		if t.Failed() || os.Getenv("STRATA_LAB_LOGS") != "" {
			for _, n := range []string{"coordinator", "h1", "h2", "h3"} {
				if b, err := os.ReadFile(l.logFile(n)); err == nil {
					t.Logf("--- %s log (tail) ---\n%s", n, tail(b, 3000))
				}
			}
			for i := 1; i <= l.Hosts; i++ {
				if b, err := os.ReadFile(filepath.Join(l.OVSDir(i), "ovs-vswitchd.log")); err == nil {
					t.Logf("--- %s ovs-vswitchd log (tail) ---\n%s", l.HostName(i), tail(b, 2000))
				}
			}
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

// upLab is testLab brought up: every host alive and converged, then each
// manifest applied in turn and converged on every host.
func upLab(t testing.TB, hosts, retain int, manifests ...string) *Lab {
	t.Helper()
	l := testLab(t, hosts, retain)
	if err := l.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitCLI(t, l, 60*time.Second, fmt.Sprintf("%d hosts alive and converged", hosts), AllAliveAndConverged(hosts))
	for i, m := range manifests {
		applyManifest(t, l, m)
		waitCLI(t, l, 60*time.Second, fmt.Sprintf("manifest %d converged on %d hosts", i+1, hosts), AllAliveAndConverged(hosts))
	}
	return l
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// stratactl runs the CLI, as an operator would, and decodes its JSON.
func stratactl(t testing.TB, l *Lab, out any, args ...string) {
	t.Helper()
	if err := l.Ctl(out, args...); err != nil {
		t.Fatal(err)
	}
}

// waitCLI polls `stratactl status -o json` until ok holds.
func waitCLI(t testing.TB, l *Lab, limit time.Duration, what string, ok func(api.ClusterStatus) bool) (api.ClusterStatus, time.Duration) {
	t.Helper()
	limit = testenv.Scale(limit)
	start := time.Now()
	var st api.ClusterStatus
	for time.Since(start) < limit {
		st = api.ClusterStatus{}
		stratactl(t, l, &st, "status")
		if ok(st) {
			return st, time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not reached in %s; last status %+v", what, limit, st)
	return st, 0
}

func hostState(name, state string) func(api.ClusterStatus) bool {
	return func(st api.ClusterStatus) bool {
		for _, h := range st.Hosts {
			if h.Name == name {
				return h.State == state
			}
		}
		return false
	}
}

func createProjects(t testing.TB, l *Lab, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		stratactl(t, l, nil, "projects", "create", fmt.Sprintf("%s-%d", prefix, i))
	}
}

func report(t testing.TB, l *Lab, host string) api.HostReport {
	t.Helper()
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	var h api.Host
	if err := c.Do(context.Background(), http.MethodGet, "/v1/hosts/"+host, nil, &h); err != nil {
		t.Fatal(err)
	}
	if h.Report == nil {
		t.Fatalf("host %s has sent no report", host)
	}
	return *h.Report
}

// TestLabGossipConvergence starts a coordinator and three agents in
// namespaces and follows the cluster through an agent crash, a coordinator
// restart and an agent offline past the retained deltas.
func TestLabGossipConvergence(t *testing.T) {
	const retain = 5
	l := testLab(t, 3, retain)
	ctx := context.Background()
	start := time.Now()
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	st, took := waitCLI(t, l, 30*time.Second, "3 hosts alive and converged", AllAliveAndConverged(3))
	t.Logf("lab up to 3 hosts alive and converged on epoch %d: %s (cluster start %s)", st.Epoch, took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	// The gossip keyring and the hosts' identities are the first commits.
	base := st.Epoch

	createProjects(t, l, "a", 2)
	st, took = waitCLI(t, l, 20*time.Second, "converged after 2 commits", AllAliveAndConverged(3))
	if st.Epoch != base+2 {
		t.Fatalf("epoch %d after two project creates, want %d", st.Epoch, base+2)
	}
	t.Logf("3 hosts applied epoch %d within %s", st.Epoch, took.Round(time.Millisecond))

	// Crash h3: gossip declares it dead, the rest of the fleet is converged.
	if err := l.StopAgent(3, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, took = waitCLI(t, l, 30*time.Second, "h3 dead", hostState("h3", api.StateDead))
	t.Logf("SIGKILLed h3 declared dead after %s", took.Round(time.Millisecond))

	createProjects(t, l, "b", 2) // epochs 3, 4: within the retained deltas
	if err := l.StartAgent(3); err != nil {
		t.Fatal(err)
	}
	st, took = waitCLI(t, l, 30*time.Second, "h3 rejoined and caught up", AllAliveAndConverged(3))
	rep := report(t, l, "h3")
	if st.Epoch != base+4 || rep.DeltaSyncs == 0 || rep.FullSyncs != 0 {
		t.Fatalf("h3 should catch up from epoch 2 to 4 by deltas: epoch %d report %+v", st.Epoch, rep)
	}
	t.Logf("h3 rejoined and caught up by deltas to epoch %d in %s (delta syncs %d, full %d)", st.Epoch, took.Round(time.Millisecond), rep.DeltaSyncs, rep.FullSyncs)

	// Coordinator restart loses nothing.
	var before, after []api.Resource
	stratactl(t, l, &before, "projects", "list")
	if err := l.StopCoordinator(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := l.StartCoordinator(ctx); err != nil {
		t.Fatal(err)
	}
	stratactl(t, l, &after, "projects", "list")
	if len(after) != len(before) || len(after) != 4 {
		t.Fatalf("projects before restart %d, after %d", len(before), len(after))
	}
	st, took = waitCLI(t, l, 30*time.Second, "converged after coordinator restart", AllAliveAndConverged(3))
	if st.Epoch != base+4 {
		t.Fatalf("epoch after coordinator restart = %d, want %d", st.Epoch, base+4)
	}
	t.Logf("coordinator restarted at epoch %d with %d projects; fleet converged again in %s", st.Epoch, len(after), took.Round(time.Millisecond))

	// h2 offline past the retained deltas gets a full plan.
	if err := l.StopAgent(2, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	createProjects(t, l, "c", retain+2)
	if err := l.StartAgent(2); err != nil {
		t.Fatal(err)
	}
	st, took = waitCLI(t, l, 30*time.Second, "h2 converged after full plan", AllAliveAndConverged(3))
	rep = report(t, l, "h2")
	if rep.FullSyncs != 1 || st.Epoch != base+4+retain+2 {
		t.Fatalf("h2 should have needed one full plan: epoch %d report %+v", st.Epoch, rep)
	}
	t.Logf("h2, %d epochs behind with %d deltas retained, converged by a full plan in %s", retain+2, retain, took.Round(time.Millisecond))

	// The agents' saved plans hold exactly the cluster's projects.
	var saved struct {
		Epoch     uint64
		Resources map[string]api.Resource
	}
	b, err := os.ReadFile(filepath.Join(l.Dir, "h2", "plan.json"))
	if err != nil {
		t.Fatal(err)
	}
	err = json.Unmarshal(b, &saved)
	projects := 0
	for _, r := range saved.Resources {
		if r.Kind == "project" {
			projects++
		}
	}
	if err != nil || saved.Epoch != st.Epoch || projects != 4+retain+2 {
		t.Fatalf("h2 saved plan epoch %d with %d projects, want %d and %d (%v)", saved.Epoch, projects, st.Epoch, 4+retain+2, err)
	}
}

// waitReconciled waits until host's agent has reported a successful pass
// of every subsystem that started after since: a restarted agent has then
// looked at the host and converged it, not just rejoined gossip.
func waitReconciled(t testing.TB, l *Lab, host string, since time.Time) {
	t.Helper()
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(testenv.Scale(30 * time.Second))
	for time.Now().Before(deadline) {
		var h api.Host
		if c.Do(context.Background(), http.MethodGet, "/v1/hosts/"+host, nil, &h) == nil && h.Report != nil && len(h.Report.Subsystems) > 0 {
			done := true
			for _, s := range h.Report.Subsystems {
				done = done && s.OK && s.LastSuccess.After(since)
			}
			if done {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never reported a converged pass after %s", host, since.Format(time.RFC3339Nano))
}
