package packaging

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/lab"
	"github.com/strata-infra/strata/pkg/api"
)

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
		Hosts: len(agentBins), Dir: filepath.Join(testenv.SharedTempDir(t), "lab"), BinDir: binDir, RetainDeltas: 10000,
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

// aptRepo makes root's only apt source a flat file repository at
// /srv/strata-repo holding debs, indexed by dpkg-scanpackages, as the
// role's "repo" install expects. A deb named in corrupt is indexed, then
// overwritten, so apt refuses it on its hash.
func aptRepo(t *testing.T, root string, debs []string, corrupt string) {
	t.Helper()
	scan := tool(t, "dpkg-scanpackages")
	repo := filepath.Join(root, "srv", "strata-repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, deb := range debs {
		b, err := os.ReadFile(deb)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, filepath.Base(deb)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(scan, "--multiversion", ".")
	cmd.Dir = repo
	index, err := cmd.Output()
	if err != nil {
		t.Fatalf("dpkg-scanpackages in %s: %v", repo, err)
	}
	if err := os.WriteFile(filepath.Join(repo, "Packages"), index, 0o644); err != nil {
		t.Fatal(err)
	}
	if corrupt != "" {
		if err := os.WriteFile(filepath.Join(repo, filepath.Base(corrupt)), []byte("not a Debian package\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lists, _ := filepath.Glob(filepath.Join(root, "etc", "apt", "sources.list.d", "*"))
	for _, f := range lists {
		os.Remove(f)
	}
	src := "deb [trusted=yes] file:/srv/strata-repo ./\n"
	if err := os.WriteFile(filepath.Join(root, "etc", "apt", "sources.list"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// restartEvent is one agent restart the supervisor made, with what the
// coordinator said of every host's drain state just before it.
type restartEvent struct {
	host        int
	at          time.Time
	drained     map[string]bool
	keptDrained bool // the host stayed drained while its old agent ran on
}

// supervisor plays systemd's part for the lab's agents, which run from
// the binary dpkg installed in each host's root: on a host with systemd
// the package's postinst try-restarts the running unit once the new
// files are in; in a chroot it cannot, so the supervisor restarts the
// agent when it sees dpkg replace the binary (a new inode). It waits
// hold first, checking that the playbook keeps the host drained while
// the old agent still runs.
type supervisor struct {
	l     *lab.Lab
	roots []string
	hold  time.Duration
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	evs   []restartEvent
	errs  []error
}

func superviseAgents(t *testing.T, l *lab.Lab, roots []string) *supervisor {
	s := &supervisor{l: l, roots: roots, hold: 1500 * time.Millisecond, stop: make(chan struct{}), done: make(chan struct{})}
	inodes := make([]uint64, len(roots))
	for i := range roots {
		inodes[i] = s.inode(i)
	}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
			for i := range roots {
				if ino := s.inode(i); ino != 0 && ino != inodes[i] {
					inodes[i] = ino
					s.restart(i + 1)
				}
			}
		}
	}()
	t.Cleanup(s.halt)
	return s
}

func (s *supervisor) inode(i int) uint64 {
	var st syscall.Stat_t
	if syscall.Stat(filepath.Join(s.roots[i], "usr", "bin", "strata-agent"), &st) != nil {
		return 0
	}
	return st.Ino
}

func (s *supervisor) drainState() (map[string]bool, error) {
	var hs []api.Host
	if err := s.l.Ctl(&hs, "hosts", "list"); err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, h := range hs {
		m[h.Name] = h.Drained
	}
	return m, nil
}

func (s *supervisor) restart(host int) {
	ev := restartEvent{host: host, at: time.Now(), keptDrained: true}
	var err error
	ev.drained, err = s.drainState()
	for deadline := time.Now().Add(s.hold); err == nil && time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		var now map[string]bool
		if now, err = s.drainState(); err == nil && !now[s.l.HostName(host)] {
			ev.keptDrained = false
		}
	}
	if err == nil {
		err = s.l.RestartAgent(host)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evs = append(s.evs, ev)
	if err != nil {
		s.errs = append(s.errs, fmt.Errorf("restart h%d: %w", host, err))
	}
}

// events returns and forgets the restarts so far.
func (s *supervisor) events() ([]restartEvent, []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	evs, errs := s.evs, s.errs
	s.evs, s.errs = nil, nil
	return evs, errs
}

func (s *supervisor) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}
