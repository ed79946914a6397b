package packaging

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/lab"
	"github.com/strata-infra/strata/pkg/api"
)

func ansibleDir() string { return filepath.Join(repoRoot(), "packaging", "ansible") }

func ansibleEnv(t *testing.T) []string {
	return append(os.Environ(),
		"ANSIBLE_ROLES_PATH="+filepath.Join(ansibleDir(), "roles"),
		"ANSIBLE_NOCOLOR=1", "ANSIBLE_HOST_KEY_CHECKING=False", "ANSIBLE_RETRY_FILES_ENABLED=False",
		"ANSIBLE_LOCAL_TEMP="+t.TempDir(), "ANSIBLE_HOME="+t.TempDir())
}

// TestAnsibleLint: both playbooks pass ansible-playbook --syntax-check and
// the roles and playbooks pass ansible-lint (production profile).
func TestAnsibleLint(t *testing.T) {
	playbook := tool(t, "ansible-playbook")
	lint := tool(t, "ansible-lint")
	for _, pb := range []string{"site.yml", "rolling-upgrade.yml"} {
		cmd := exec.Command(playbook, "--syntax-check", "-i", "localhost,", filepath.Join("playbooks", pb))
		cmd.Dir, cmd.Env = ansibleDir(), ansibleEnv(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("syntax-check %s: %v\n%s", pb, err, out)
		}
	}
	cmd := exec.Command(lint, "--offline", "--profile", "production", "playbooks/", "roles/")
	cmd.Dir, cmd.Env = ansibleDir(), ansibleEnv(t)
	out, err := cmd.CombinedOutput()
	t.Logf("ansible-lint:\n%s", out)
	if err != nil {
		t.Fatalf("ansible-lint: %v", err)
	}
}

// rollout runs the rolling-upgrade playbook against the lab's hosts and
// returns its output and error. Each host's tasks run inside its root:
// the connection is local and the Python that runs modules is the
// root's own, through chroot, so the role's apt task installs from the
// root's repository into the root's dpkg; the playbook's stratactl steps
// run on the controller, as they would on a real site.
func rollout(t *testing.T, l *lab.Lab, roots []string, version string) (string, error) {
	t.Helper()
	tok, err := l.AdminToken()
	if err != nil {
		t.Fatal(err)
	}
	inv := "[strata_agents]\n"
	for i, root := range roots {
		inv += fmt.Sprintf("%s ansible_connection=local ansible_pipelining=true ansible_python_interpreter=\"chroot %s /usr/bin/python3\"\n",
			l.HostName(i+1), root)
	}
	invFile := filepath.Join(t.TempDir(), "inventory.ini")
	if err := os.WriteFile(invFile, []byte(inv), 0o600); err != nil {
		t.Fatal(err)
	}
	vars, _ := json.Marshal(map[string]any{
		"strata_version": version, "strata_endpoint": l.Endpoint(), "strata_token": tok, "strata_ca_file": l.CAFile(),
		"strata_ctl": filepath.Join(l.BinDir, "stratactl"), "strata_wait_delay": 1, "strata_wait_retries": 60,
	})
	varsFile := filepath.Join(t.TempDir(), "vars.json")
	if err := os.WriteFile(varsFile, vars, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tool(t, "ansible-playbook"), "-i", invFile, "-e", "@"+varsFile, "playbooks/rolling-upgrade.yml")
	cmd.Dir, cmd.Env = ansibleDir(), ansibleEnv(t)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// checkOneAtATime checks that the rollout restarted exactly the hosts in
// want, once each and in that order, each while it alone was drained and
// kept drained until its new agent ran.
func checkOneAtATime(t *testing.T, l *lab.Lab, s *supervisor, want []int) []restartEvent {
	t.Helper()
	evs, errs := s.events()
	for _, err := range errs {
		t.Error(err)
	}
	var got []int
	for _, e := range evs {
		got = append(got, e.host)
		for name, drained := range e.drained {
			if drained != (name == l.HostName(e.host)) {
				t.Errorf("when h%d's agent was restarted, %s had drained=%v: %v", e.host, name, drained, e.drained)
			}
		}
		if !e.keptDrained {
			t.Errorf("h%d was enabled again while its old agent still ran", e.host)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("agent restarts: got hosts %v, want %v (one restart each, in order)", got, want)
	}
	return evs
}

// TestRollingUpgradePinsVersion runs the rolling-upgrade playbook against
// a lab of three hosts while an endpoint of the demo's tenant network on
// h1 pings one on h2 across the VXLAN overlay. Each host has a root of
// its own (an overlay of the cached Debian chroot) where dpkg installed
// the built strata-agent .deb, and its agent runs from the binary dpkg
// put there. Each root's apt repository holds two builds newer than the
// installed one. The first rollout asks for the middle one: each host
// gets exactly that version from apt, one host at a time (drained, its
// agent restarted once, enabled only once the new agent runs and has
// converged), without losing a ping. The second asks for the newest, and
// h2's copy of it is corrupt: h1 is upgraded, h2 stays drained on the old
// version, and h3 is not touched at all. This machine's own packages are
// left alone.
func TestRollingUpgradePinsVersion(t *testing.T) {
	requireRoot(t)
	tool(t, "ansible-playbook")
	tool(t, "busybox")
	tool(t, "dnsmasq")
	const v1, v2, v3 = oldVersion, newVersion, "1.0.0+test3"
	debOf := func(v string) string { return debFile(packagesOf(t, v), "strata-agent", v) }
	deb1, deb2, deb3 := debOf(v1), debOf(v2), debOf(v3)
	binDir := t.TempDir()
	goBuild(t, binDir, "./coordinator/cmd/strata-coordinator", v1)
	goBuild(t, binDir, "./coordinator/cmd/stratactl", v1)
	hostBefore := hostPackageState()
	roots, agentBins := hostRoots(t, 3, deb1)
	for i, root := range roots {
		corrupt := ""
		if i == 1 {
			corrupt = deb3
		}
		aptRepo(t, root, []string{deb2, deb3}, corrupt)
	}

	l := rollingLab(t, binDir, agentBins)
	ctx := t.Context()
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	// The coordinator refuses a DHCP subnet while no host is alive to run it.
	if _, err := l.WaitStatus(ctx, 60*time.Second, "hosts alive", lab.AllAliveAndConverged(3)); err != nil {
		t.Fatal(err)
	}
	ctlJSON(t, l, nil, "apply", "-f", filepath.Join(repoRoot(), "testdata", "lab", "demo.yaml"))
	if _, err := l.WaitStatus(ctx, 60*time.Second, "demo converged", lab.AllAliveAndConverged(3)); err != nil {
		t.Fatal(err)
	}
	var demo strings.Builder
	if err := l.DemoTraffic(ctx, &demo); err != nil {
		t.Fatalf("demo traffic: %v\n%s", err, demo.String())
	}
	eps, err := l.Endpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var from, to lab.Endpoint
	for _, e := range eps {
		switch {
		case e.Project == "demo-a" && e.Host == "h1":
			from = e
		case e.Project == "demo-a" && e.Host == "h2":
			to = e
		}
	}
	if from.Namespace == "" || to.IP == "" {
		t.Fatalf("no demo-a endpoints on h1 and h2 in %+v", eps)
	}
	sup := superviseAgents(t, l, roots)
	ping := startPing(t, from.Namespace, to.IP)
	pingStart := time.Now()
	time.Sleep(time.Second)

	start := time.Now()
	out, err := rollout(t, l, roots, v2)
	if err != nil {
		t.Fatalf("rollout to %s: %v\n%s", v2, err, out)
	}
	took := time.Since(start)
	firstRun := checkOneAtATime(t, l, sup, []int{1, 2, 3})
	pids := map[int]int{}
	hs := hostsByName(t, l)
	for i := 1; i <= 3; i++ {
		h := hs[l.HostName(i)]
		if versionOf(h) != v2 || h.Drained || h.State != api.StateAlive {
			t.Errorf("%s after the rollout: version %q drained %v state %s", h.Name, versionOf(h), h.Drained, h.State)
		}
		pids[i] = l.AgentPID(i)
	}
	for i, root := range roots {
		if got := installedVersion(t, root); got != v2+"-1" {
			t.Errorf("h%d: apt installed strata-agent %s from a repository holding %s and %s, want exactly %s-1", i+1, got, v2, v3, v2)
		}
	}
	t.Logf("rollout of %s over 3 hosts, one at a time, %s also in the repository: %s", v2, v3, took.Round(100*time.Millisecond))

	// Second rollout: h2's copy of the newest build is corrupt.
	out, err = rollout(t, l, roots, v3)
	if err == nil {
		t.Fatalf("rollout with a corrupt package for h2 succeeded:\n%s", out)
	}
	checkOneAtATime(t, l, sup, []int{1})
	hs = hostsByName(t, l)
	if h := hs["h1"]; versionOf(h) != v3 || h.Drained {
		t.Errorf("h1: version %q drained %v, want %s enabled", versionOf(h), h.Drained, v3)
	}
	if h := hs["h2"]; versionOf(h) != v2 || !h.Drained || l.AgentPID(2) != pids[2] {
		t.Errorf("h2: version %q drained %v pid %d (was %d), want %s, its agent untouched and the host left drained", versionOf(h), h.Drained, l.AgentPID(2), pids[2], v2)
	}
	if h := hs["h3"]; versionOf(h) != v2 || h.Drained || l.AgentPID(3) != pids[3] {
		t.Errorf("h3: version %q drained %v pid %d (was %d), want untouched", versionOf(h), h.Drained, l.AgentPID(3), pids[3])
	}
	if strings.Contains(out, "[h3]") {
		t.Errorf("the playbook ran tasks on h3:\n%s", out)
	}
	for i, want := range []string{v3, v2, v2} {
		if got := installedVersion(t, roots[i]); got != want+"-1" {
			t.Errorf("h%d: dpkg in its root has strata-agent %s, want %s-1", i+1, got, want)
		}
	}
	if after := hostPackageState(); after != hostBefore {
		t.Errorf("this machine's strata-agent changed: before %q, after %q", hostBefore, after)
	}

	sent, lost := ping.stop(t)
	t.Logf("ping %s (%s on h1) -> %s (%s on h2), 5/s through both rollouts: %d sent, %d lost %v (the last one, in flight at stop, not counted)",
		from.Port, from.Namespace, to.IP, to.Port, sent, len(lost), lost)
	for _, seq := range lost {
		at := pingStart.Add(time.Duration(seq) * 200 * time.Millisecond)
		where := "outside any agent restart"
		for _, e := range firstRun {
			if at.After(e.at.Add(-time.Second)) && at.Before(e.at.Add(sup.hold+3*time.Second)) {
				where = fmt.Sprintf("within %s of h%d's agent upgrade (first rollout)", at.Sub(e.at).Round(10*time.Millisecond), e.host)
			}
		}
		t.Logf("ping seq %d lost at +%s: %s", seq, at.Sub(pingStart).Round(10*time.Millisecond), where)
	}
	if sent < 10 || len(lost) > 0 {
		t.Errorf("tenant traffic lost %d of %d pings during the rollouts: seq %v", len(lost), sent, lost)
	}
}
