package packaging

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

type helperEvent struct {
	kind string
	host int
	at   time.Time
}

func readHelperLog(t *testing.T, path string) []helperEvent {
	t.Helper()
	b, _ := os.ReadFile(path)
	var evs []helperEvent
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		h, _ := strconv.Atoi(f[1])
		ns, _ := strconv.ParseInt(f[2], 10, 64)
		evs = append(evs, helperEvent{f[0], h, time.Unix(0, ns)})
	}
	return evs
}

// rollout runs the rolling-upgrade playbook against the lab's hosts
// (connection local; the upgrade step installs debs[i] with dpkg into
// host i's root and restarts its agent, through this test binary as the
// helper) and returns its output and error.
func rollout(t *testing.T, l *lab.Lab, cfgFile, version string, debs map[int]string) (string, error) {
	t.Helper()
	tok, err := l.AdminToken()
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	inv := "[strata_agents]\n"
	for i := 1; i <= l.Hosts; i++ {
		inv += fmt.Sprintf("%s lab_index=%d lab_agent_deb=%s\n", l.HostName(i), i, debs[i])
	}
	inv += "\n[strata_agents:vars]\nansible_connection=local\nansible_python_interpreter=/usr/bin/python3\n"
	invFile := filepath.Join(t.TempDir(), "inventory.ini")
	if err := os.WriteFile(invFile, []byte(inv), 0o600); err != nil {
		t.Fatal(err)
	}
	vars, _ := json.Marshal(map[string]any{
		"strata_version": version, "strata_endpoint": l.Endpoint(), "strata_token": tok, "strata_ca_file": l.CAFile(),
		"strata_ctl": filepath.Join(l.BinDir, "stratactl"), "strata_wait_delay": 1, "strata_wait_retries": 60,
		"strata_agent_upgrade_command": fmt.Sprintf("env %s=%s %s {{ lab_index }} {{ lab_agent_deb }}", labHelperEnv, cfgFile, self),
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

// TestRollingUpgrade runs the rolling-upgrade playbook against a lab of
// three hosts while an endpoint of the demo's tenant network on h1 pings
// one on h2 across the VXLAN overlay. Each host has a root of its own (an
// overlay of the cached Debian chroot) where dpkg installed the built
// strata-agent .deb, and its agent runs from the binary dpkg put there;
// an upgrade is dpkg -i of the next .deb in that root, then a restart (the
// lab has no systemd). The first rollout upgrades the hosts one at a time
// (drain, upgrade, alive and converged on the current epoch, new version,
// enable) without losing a ping. The second gives h2 a package dpkg
// refuses: h1 is upgraded, h2 stays drained on the old version, and h3 is
// not touched at all. This machine's own packages are left alone.
func TestRollingUpgrade(t *testing.T) {
	requireRoot(t)
	tool(t, "ansible-playbook")
	tool(t, "busybox")
	tool(t, "dnsmasq")
	const v1, v2, v3 = oldVersion, newVersion, "1.0.0+test3"
	debOf := func(v string) string { return debFile(packagesOf(t, v), "strata-agent", v) }
	deb1, deb2, deb3 := debOf(v1), debOf(v2), debOf(v3)
	broken := filepath.Join(t.TempDir(), filepath.Base(deb3))
	if err := os.WriteFile(broken, []byte("not a Debian package\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	binDir := t.TempDir()
	goBuild(t, binDir, "./coordinator/cmd/strata-coordinator", v1)
	goBuild(t, binDir, "./coordinator/cmd/stratactl", v1)
	hostBefore := hostPackageState()
	roots, agentBins := hostRoots(t, 3, deb1)

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
	cfgFile := filepath.Join(t.TempDir(), "lab.json")
	b, err := json.Marshal(newLabFile(l.Config, roots))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ping := startPing(t, from.Namespace, to.IP)
	pingStart := time.Now()
	time.Sleep(time.Second)

	start := time.Now()
	out, err := rollout(t, l, cfgFile, v2, map[int]string{1: deb2, 2: deb2, 3: deb2})
	if err != nil {
		t.Fatalf("rollout to %s: %v\n%s", v2, err, out)
	}
	took := time.Since(start)
	evs := readHelperLog(t, cfgFile+".log")
	firstRun := evs
	if len(evs) != 6 {
		t.Fatalf("helper log: %+v", evs)
	}
	for k := 0; k < 3; k++ {
		s, d := evs[2*k], evs[2*k+1]
		if s.kind != "start" || d.kind != "done" || s.host != k+1 || d.host != k+1 {
			t.Fatalf("upgrades not one host at a time in order: %+v", evs)
		}
	}
	hs := hostsByName(t, l)
	for i := 1; i <= 3; i++ {
		h := hs[l.HostName(i)]
		if versionOf(h) != v2 || h.Drained || h.State != api.StateAlive {
			t.Errorf("%s after the rollout: version %q drained %v state %s", h.Name, versionOf(h), h.Drained, h.State)
		}
	}
	for i, root := range roots {
		if got := installedVersion(t, root); got != v2+"-1" {
			t.Errorf("h%d: dpkg in its root has strata-agent %s, want %s-1", i+1, got, v2)
		}
	}
	t.Logf("rollout of %s over 3 hosts, one at a time: %s", v2, took.Round(100*time.Millisecond))

	// Second rollout: h2's package is broken.
	pid3 := l.AgentPID(3)
	os.Remove(cfgFile + ".log")
	out, err = rollout(t, l, cfgFile, v3, map[int]string{1: deb3, 2: broken, 3: deb3})
	if err == nil {
		t.Fatalf("rollout with a broken h2 succeeded:\n%s", out)
	}
	evs = readHelperLog(t, cfgFile+".log")
	for _, e := range evs {
		if e.host == 3 {
			t.Errorf("h3 was touched after h2 failed: %+v", evs)
		}
	}
	hs = hostsByName(t, l)
	if h := hs["h1"]; versionOf(h) != v3 || h.Drained {
		t.Errorf("h1: version %q drained %v, want %s enabled", versionOf(h), h.Drained, v3)
	}
	if h := hs["h2"]; versionOf(h) != v2 || !h.Drained {
		t.Errorf("h2: version %q drained %v, want %s and left drained", versionOf(h), h.Drained, v2)
	}
	if h := hs["h3"]; versionOf(h) != v2 || h.Drained || l.AgentPID(3) != pid3 {
		t.Errorf("h3: version %q drained %v pid %d (was %d), want untouched", versionOf(h), h.Drained, l.AgentPID(3), pid3)
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
			if e.kind == "start" && at.After(e.at.Add(-time.Second)) && at.Before(e.at.Add(3*time.Second)) {
				where = fmt.Sprintf("within %s of h%d's agent restart (first rollout)", at.Sub(e.at).Round(10*time.Millisecond), e.host)
			}
		}
		t.Logf("ping seq %d lost at +%s: %s", seq, at.Sub(pingStart).Round(10*time.Millisecond), where)
	}
	if sent < 10 || len(lost) > 0 {
		t.Errorf("tenant traffic lost %d of %d pings during the rollouts: seq %v", len(lost), sent, lost)
	}
}
