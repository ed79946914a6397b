package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
// and rolling-upgrade labs (strata-<Tag>-…), the network test labs (stt<pid>…)
// and the compute tests' (stc<pid>-…). Root-namespace links: the labs'
// bridges and veths (<Tag>br, <Tag>ex, <Tag>xo, <Tag>h<N>, <Tag>x<N>).
var (
	nsPatterns = []pattern{
		{regexp.MustCompile(`^strata-[tr]([0-9a-z]{5})[0-9a-z]{1,2}-`), 36},
		{regexp.MustCompile(`^stt([0-9]+)[a-z]`), 10},
		{regexp.MustCompile(`^stc([0-9]+)-`), 10},
	}
	linkPatterns = []pattern{
		{regexp.MustCompile(`^[tr]([0-9a-z]{5})[0-9a-z]{1,2}(br|ex|xo|h[0-9]+|x[0-9]+)$`), 36},
	}
)

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
// links, and subnet claims, of processes that are gone, and those of pid
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
