package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// A leftover is a resource a test made, named with the pid of the process
// that made it.
type pattern struct {
	re   *regexp.Regexp // its first group is the pid
	base int            // the pid's base: 10 or 36
}

// Test resource names that carry their maker's pid. Namespaces: the lab
// and rolling-upgrade labs (strata-<Tag>-…), the network test labs
// (stt<pid>…), the compute tests' (stc<pid>-…) and the Ceph reachability
// test's (s13<pid>n). Root-namespace links: the labs' bridges and veths
// (<Tag>br, <Tag>ex, <Tag>xo, <Tag>h<N>, <Tag>x<N>), the test Ceph
// clusters' bridges (s13<letter><pid>cb, internal/cephtest) and the
// Ceph reachability test's veth (s13<pid>h, its peer s13<pid>g).
// Directories in the temp dir: MkdirTemp's <prefix>.pid<pid>.<random>.
var (
	nsPatterns = []pattern{
		{regexp.MustCompile(`^strata-[tr]([0-9a-z]{5})[0-9a-z]{1,2}-`), 36},
		{regexp.MustCompile(`^stt([0-9]+)[a-z]`), 10},
		{regexp.MustCompile(`^stc([0-9]+)-`), 10},
		{regexp.MustCompile(`^s13([0-9]+)n$`), 10},
	}
	linkPatterns = []pattern{
		{regexp.MustCompile(`^[tr]([0-9a-z]{5})[0-9a-z]{1,2}(br|ex|xo|h[0-9]+|x[0-9]+)$`), 36},
		{regexp.MustCompile(`^s13[a-z]([0-9]+)cb$`), 10},
		{regexp.MustCompile(`^s13([0-9]+)[hg]$`), 10},
	}
	dirPatterns = []pattern{
		{regexp.MustCompile(`^[a-z0-9-]+\.pid([0-9]+)\.[0-9]+$`), 10},
	}
)

// MkdirTemp makes a directory in the temp dir for a test, named
// <prefix>.pid<pid>.<random> so that the sweep can tell whose it is and
// remove it (and stop what still runs from it) once that process is gone.
func MkdirTemp(prefix string) (string, error) {
	return os.MkdirTemp("", fmt.Sprintf("%s.pid%d.", prefix, os.Getpid()))
}

func (p pattern) pid(name string) (int, bool) {
	m := p.re.FindStringSubmatch(name)
	if m == nil {
		return 0, false
	}
	pid, err := strconv.ParseInt(m[1], p.base, 32)
	return int(pid), err == nil && pid > 0
}

func owner(ps []pattern, name string) (int, bool) {
	for _, p := range ps {
		if pid, ok := p.pid(name); ok {
			return pid, true
		}
	}
	return 0, false
}

// Sweep removes what tests left behind under the test prefixes: network
// namespaces (killing, by pid, the processes still in them), root-namespace
// links, directories in the temp dir (killing the processes that run from
// them) and subnet claims, of processes that are gone, and those of pid
// self too when self is not 0 (a suite sweeping up after itself). It
// returns one line per removed thing.
func Sweep(self int) []string {
	stale := func(pid int) bool { return pid == self || !Alive(pid) }
	var done []string
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		name := e.Name()
		if pid, ok := owner(nsPatterns, name); ok && stale(pid) {
			killed := killIn(name)
			if err := exec.Command("ip", "netns", "delete", name).Run(); err == nil {
				done = append(done, fmt.Sprintf("namespace %s (pid %d%s)", name, pid, killed))
			}
		}
	}
	links, _ := os.ReadDir("/sys/class/net")
	for _, e := range links {
		name := e.Name()
		if pid, ok := owner(linkPatterns, name); ok && stale(pid) {
			if err := exec.Command("ip", "link", "delete", name).Run(); err == nil {
				done = append(done, fmt.Sprintf("link %s (pid %d)", name, pid))
			}
		}
	}
	done = append(done, sweepDirs(os.TempDir(), stale)...)
	claims, _ := os.ReadDir(claimDir)
	for _, e := range claims {
		f := filepath.Join(claimDir, e.Name())
		b, _ := os.ReadFile(f)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && stale(pid) {
			if os.Remove(f) == nil {
				done = append(done, fmt.Sprintf("subnet claim %s (pid %d)", e.Name(), pid))
			}
		}
	}
	return done
}

// sweepDirs removes the test directories in dir (see MkdirTemp) of stale
// pids, after killing, by pid, the processes whose command line names
// them (daemons a test started from there: a Ceph cluster, ovsdb-server).
func sweepDirs(dir string, stale func(int) bool) []string {
	var done []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if pid, ok := owner(dirPatterns, e.Name()); ok && stale(pid) && e.IsDir() {
			p := filepath.Join(dir, e.Name())
			killed := killUsing(p)
			// Never remove through a mount (a chroot's overlay): the
			// removal would reach what the mount shows.
			if unmountUnder(p) != nil {
				continue
			}
			if os.RemoveAll(p) == nil {
				done = append(done, fmt.Sprintf("directory %s (pid %d%s)", p, pid, killed))
			}
		}
	}
	return done
}

// unmountUnder detaches every mount at or below dir, deepest first, and
// fails if one stays.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, l := range strings.Split(string(b), "\n") {
		// id parent major:minor root mount-point ...; spaces in paths
		// are escaped as \040.
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		mp := strings.ReplaceAll(f[4], "\\040", " ")
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			points = append(points, mp)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, mp := range points {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
	return nil
}

// killUsing kills the processes whose command line mentions path.
func killUsing(path string) string {
	procs, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), path+"/") && !strings.Contains(string(b), path+"\x00") {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			pids = append(pids, e.Name())
		}
	}
	if len(pids) == 0 {
		return ""
	}
	return ", killed " + strings.Join(pids, " ")
}

// killIn kills the processes left in namespace ns, by pid.
func killIn(ns string) string {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	var pids []string
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				pids = append(pids, f)
			}
		}
	}
	if len(pids) == 0 {
		return ""
	}
	return ", killed " + strings.Join(pids, " ")
}

// Runner is the part of *testing.M that Main uses, so that this package
// does not link the testing package into what imports it.
type Runner interface{ Run() int }

// Main runs a package's tests and then sweeps what they left behind
// (t.Cleanup does not run after a panic or a -timeout), printing what it
// removed. Use it as TestMain in packages that make host resources:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m Runner) {
	code := m.Run()
	if os.Geteuid() == 0 {
		for _, l := range Sweep(os.Getpid()) {
			fmt.Fprintln(os.Stderr, "testenv sweep: removed", l)
		}
	}
	os.Exit(code)
}
