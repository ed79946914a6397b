package packaging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/lab"
	"github.com/strata-infra/strata/pkg/api"
)

// labHelperEnv, when set, makes this test binary the lab's upgrade command
// (see TestMain): STRATA_LAB_HELPER=<lab config JSON file> <binary> <host>
// <strata-agent .deb>. The playbook runs it where a real host runs apt:
// it installs the package with dpkg into the host's own root, then
// restarts the agent as systemd would.
const labHelperEnv = "STRATA_LAB_HELPER"

// labFile is what the helper needs of the test's lab.Config (which also
// holds a func, so it is not JSON itself), and the hosts' roots.
type labFile struct {
	Prefix, Short, Bridge, Dir, BinDir string
	Hosts, RetainDeltas                int
	Subnet                             netip.Prefix
	L2Drivers, AgentBins               []string
	// Roots are the hosts' roots, overlays of the cached Debian chroot,
	// where dpkg installs strata-agent; AgentBins point into them.
	Roots []string
}

func newLabFile(c lab.Config, roots []string) labFile {
	return labFile{Prefix: c.Prefix, Short: c.Short, Bridge: c.Bridge, Dir: c.Dir, BinDir: c.BinDir,
		Hosts: c.Hosts, RetainDeltas: c.RetainDeltas, Subnet: c.Subnet, L2Drivers: c.L2Drivers,
		AgentBins: c.AgentBins, Roots: roots}
}

func (f labFile) config() lab.Config {
	return lab.Config{Prefix: f.Prefix, Short: f.Short, Bridge: f.Bridge, Dir: f.Dir, BinDir: f.BinDir,
		Hosts: f.Hosts, RetainDeltas: f.RetainDeltas, Subnet: f.Subnet, L2Drivers: f.L2Drivers,
		AgentBins: f.AgentBins}
}

// labUpgradeMain upgrades one lab host's agent package and logs start and
// end to <config>.log, so the test can see the batches one after another.
// A package dpkg refuses fails the upgrade before the agent is stopped.
func labUpgradeMain(cfgFile string, args []string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "lab upgrade:", err); return 1 }
	if len(args) != 2 {
		return fail(fmt.Errorf("want <host index> <strata-agent .deb>, got %q", args))
	}
	b, err := os.ReadFile(cfgFile)
	if err != nil {
		return fail(err)
	}
	var cfg labFile
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fail(err)
	}
	l, err := lab.New(cfg.config())
	if err != nil {
		return fail(err)
	}
	i, err := strconv.Atoi(args[0])
	if err != nil || i < 1 || i > len(cfg.Roots) {
		return fail(fmt.Errorf("host index %q: want 1..%d", args[0], len(cfg.Roots)))
	}
	logf, err := os.OpenFile(cfgFile+".log", os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fail(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "start %d %d\n", i, time.Now().UnixNano())
	err = dpkgInstall(cfg.Roots[i-1], args[1])
	if err == nil {
		err = l.RestartAgent(i)
	}
	if err != nil {
		fmt.Fprintf(logf, "fail %d %d\n", i, time.Now().UnixNano())
		return fail(err)
	}
	fmt.Fprintf(logf, "done %d %d\n", i, time.Now().UnixNano())
	return 0
}

// dpkgInstall installs the package file deb with dpkg -i inside root (a
// chroot: nothing outside root changes), as apt would on a host.
func dpkgInstall(root, deb string) error {
	b, err := os.ReadFile(deb)
	if err != nil {
		return err
	}
	stage := filepath.Join(root, "tmp", "pkgs")
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(stage, filepath.Base(deb)), b, 0o644); err != nil {
		return err
	}
	cmd := chrootCmd(root, "dpkg", "-i", "/tmp/pkgs/"+filepath.Base(deb))
	cmd.Stdin = nil // a conffile prompt would read EOF and fail
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg -i %s in %s: %w\n%s", filepath.Base(deb), root, err, tail(out))
	}
	return nil
}

// hostRoots makes n host roots, each a writable overlay of the cached
// Debian chroot with the agent's dependencies, and installs strata-agent
// from deb into each with dpkg. It returns the roots and, for each, the
// agent binary dpkg put there. The overlays are unmounted at cleanup.
func hostRoots(t *testing.T, n int, deb string) (roots, bins []string) {
	t.Helper()
	tool(t, "chroot")
	depends := run(t, "dpkg-deb", "-f", deb, "Depends")
	base := chrootBase(t, strings.TrimSpace(strings.TrimPrefix(depends, "Depends:")))
	for range n {
		root := overlay(t, base)
		if err := dpkgInstall(root, deb); err != nil {
			t.Fatal(err)
		}
		roots = append(roots, root)
		bins = append(bins, filepath.Join(root, "usr", "bin", "strata-agent"))
	}
	return roots, bins
}

// installedVersion is the version of strata-agent dpkg records in root.
func installedVersion(t *testing.T, root string) string {
	t.Helper()
	return strings.TrimSpace(chrootRun(t, root, "dpkg-query", "-W", "-f", "${Version}", "strata-agent"))
}

// hostPackageState is what this machine's own dpkg and /usr/bin say of
// strata-agent: the test must leave it as it found it.
func hostPackageState() string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version} ${Status}", "strata-agent").CombinedOutput()
	_, statErr := os.Stat("/usr/bin/strata-agent")
	return fmt.Sprintf("dpkg-query: %s (%v); /usr/bin/strata-agent: %v", out, err, statErr)
}

func goBuild(t *testing.T, dir, pkg, v string) string {
	t.Helper()
	cmd := exec.Command("go", "build", "-ldflags", "-X github.com/strata-infra/strata/pkg/version.Version="+v, "-o", dir+"/", pkg)
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return filepath.Join(dir, filepath.Base(pkg))
}

// rollingLab brings up a lab unique to this process with the demo's
// tenant networks (and so its mixed fleet: h2 and h3 on Open vSwitch for
// the GRE network), its agents run from agentBins, and tears it down at
// the end.
func rollingLab(t *testing.T, binDir string, agentBins []string) *lab.Lab {
	t.Helper()
	l, err := lab.New(lab.UniqueConfig(t, 'r', lab.Config{
		Hosts: len(agentBins), Dir: filepath.Join(t.TempDir(), "lab"), BinDir: binDir, RetainDeltas: 10000,
		L2Drivers: lab.DemoL2Drivers, AgentBins: agentBins,
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []string{"coordinator", "h1", "h2", "h3"} {
				if b, err := os.ReadFile(filepath.Join(l.Dir, "logs", n+".log")); err == nil {
					t.Logf("--- %s log (tail) ---\n%s", n, tail(b[max(0, len(b)-2500):]))
				}
			}
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

func ctlJSON(t *testing.T, l *lab.Lab, out any, args ...string) {
	t.Helper()
	if err := l.Ctl(out, args...); err != nil {
		t.Fatal(err)
	}
}

func hostsByName(t *testing.T, l *lab.Lab) map[string]api.Host {
	t.Helper()
	var hs []api.Host
	ctlJSON(t, l, &hs, "hosts", "list")
	m := map[string]api.Host{}
	for _, h := range hs {
		m[h.Name] = h
	}
	return m
}

func versionOf(h api.Host) string {
	if h.Report == nil {
		return ""
	}
	return h.Report.Version
}

// pinger pings from one endpoint namespace to an address until stopped,
// bounded in count and time, and reports packets sent and received.
type pinger struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

func startPing(t *testing.T, ns, ip string) *pinger {
	t.Helper()
	p := &pinger{}
	// 5 pings a second for at most 10 minutes.
	p.cmd = exec.Command("ip", "netns", "exec", ns, "busybox", "ping", "-i", "0.2", "-c", "3000", "-w", "600", ip)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	return p
}

var (
	pingStats = regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`)
	pingReply = regexp.MustCompile(`seq=(\d+) `)
)

// stop ends the ping (SIGINT) and returns the packets sent and the
// sequence numbers that got no reply, except the last one: it may have
// been in flight when the ping was stopped.
func (p *pinger) stop(t *testing.T) (sent int, lost []int) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	p.cmd.Wait()
	m := pingStats.FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("no ping statistics in:\n%s", p.out.String())
	}
	sent, _ = strconv.Atoi(m[1])
	got := map[int]bool{}
	for _, r := range pingReply.FindAllStringSubmatch(p.out.String(), -1) {
		n, _ := strconv.Atoi(r[1])
		got[n] = true
	}
	for seq := 0; seq < sent-1; seq++ {
		if !got[seq] {
			lost = append(lost, seq)
		}
	}
	return sent, lost
}
