package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv makes this test binary, run again, act as the child of
// TestStrictModeFailsOnMissingPart: it then requires the binary named here.
const childEnv = "STRATA_TESTENV_CHILD_PART"

func TestChildRequiresPart(t *testing.T) {
	part := os.Getenv(childEnv)
	if part == "" {
		t.Skip("runs only as the child of TestStrictModeFailsOnMissingPart")
	}
	RequireBinary(t, part)
	t.Log("child: found", part)
}

// runChild runs TestChildRequiresPart in a new process with PATH and
// STRATA_STRICT as given, and returns its verbose output and whether it
// exited zero.
func runChild(t *testing.T, part, path, strict string) (string, bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildRequiresPart$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+part, "PATH="+path, StrictEnv+"="+strict)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run child: %v", err)
	}
	return string(out), err == nil
}

// TestStrictModeFailsOnMissingPart: with a real part (qemu-img, which the
// compute and lab tests need) hidden from PATH, the helper fails the test
// naming the part under STRATA_STRICT=1 and skips it, naming the part too,
// without. A part that is present passes either way.
func TestStrictModeFailsOnMissingPart(t *testing.T) {
	empty := t.TempDir()
	const part = "qemu-img"

	out, ok := runChild(t, part, empty, "1")
	if ok || !strings.Contains(out, "--- FAIL: TestChildRequiresPart") || !strings.Contains(out, "missing "+part) {
		t.Errorf("strict, %s hidden: want a failure naming %s, exit ok=%v:\n%s", part, part, ok, out)
	}
	out, ok = runChild(t, part, empty, "")
	if !ok || !strings.Contains(out, "--- SKIP: TestChildRequiresPart") || !strings.Contains(out, "missing "+part) {
		t.Errorf("not strict, %s hidden: want a skip naming %s, exit ok=%v:\n%s", part, part, ok, out)
	}

	// A stand-in that is present: the helper finds it and the test runs.
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "s21-part"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, ok = runChild(t, "s21-part", bin, "1")
	if !ok || !strings.Contains(out, "--- PASS: TestChildRequiresPart") {
		t.Errorf("strict, part present: want a pass, exit ok=%v:\n%s", ok, out)
	}
}

type recorder struct {
	skipped, failed string
}

func (r *recorder) Helper()                          {}
func (r *recorder) Skipf(format string, args ...any) { r.skipped = format }
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = format
}

func TestMissingFollowsStrict(t *testing.T) {
	t.Setenv(StrictEnv, "1")
	var r recorder
	Missing(&r, "libvirtd", "not installed")
	if r.failed == "" || r.skipped != "" {
		t.Errorf("strict: %+v, want a failure", r)
	}
	t.Setenv(StrictEnv, "0")
	r = recorder{}
	Missing(&r, "libvirtd", "not installed")
	if r.skipped == "" || r.failed != "" {
		t.Errorf("not strict: %+v, want a skip", r)
	}
}

func TestFactorScalesWaits(t *testing.T) {
	for _, c := range []struct {
		env  string
		want time.Duration
	}{{"", time.Second}, {"1", time.Second}, {"2.5", 2500 * time.Millisecond}, {"-3", time.Second}, {"x", time.Second}} {
		t.Setenv(FactorEnv, c.env)
		if got := Scale(time.Second); got != c.want {
			t.Errorf("%s=%q: Scale(1s) = %s, want %s", FactorEnv, c.env, got, c.want)
		}
	}
	t.Setenv(FactorEnv, "1")
	n := 0
	if d, err := Poll(5*time.Second, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 || d > 5*time.Second {
		t.Errorf("Poll: %v after %d calls, %s", err, n, d)
	}
	if _, err := Poll(50*time.Millisecond, func() error { return errors.New("never") }); err == nil || !strings.Contains(err.Error(), "never") {
		t.Errorf("Poll of a false condition: %v, want its last error", err)
	}
}

func TestTagCarriesFullPID(t *testing.T) {
	a, b := Tag('t'), Tag('t')
	if a == b || len(a) > 8 {
		t.Fatalf("tags %q %q: want distinct, at most 8 characters", a, b)
	}
	if pid, ok := TagPID(a); !ok || pid != os.Getpid() {
		t.Errorf("TagPID(%q) = %d, %v; want %d", a, pid, ok, os.Getpid())
	}
	for _, c := range []struct {
		name string
		ns   bool
		want int
	}{
		{"strata-" + a + "-h1", true, os.Getpid()},
		{"strata-" + a + "-h1-r-x", true, os.Getpid()},
		{"stt4242a3-h1", true, 4242},
		{"stc77-h2", true, 77},
		{"strata-lab-h1", true, 0},
		{a + "br", false, os.Getpid()},
		{a + "h3", false, os.Getpid()},
		{"s13n", true, 0},
		{"s13123456n", true, 123456},
		{"s13t4194303cb", false, 4194303},
		{"s13i77cb", false, 77},
		{"s13123456h", false, 123456},
		{"s13123456g", false, 123456},
		{"s15phy", false, 0},
		{"eth0", false, 0},
		{"tap0123", false, 0},
	} {
		ps := linkPatterns
		if c.ns {
			ps = nsPatterns
		}
		if pid, _ := owner(ps, c.name); pid != c.want {
			t.Errorf("owner of %q = %d, want %d", c.name, pid, c.want)
		}
	}
}

func TestClaimSubnetIsExclusive(t *testing.T) {
	claimDir = t.TempDir()
	seen := map[string]bool{}
	for range 20 {
		p, release, err := ClaimSubnet()
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		if seen[p.String()] || overlapsAny(p, hostPrefixes()) {
			t.Fatalf("subnet %s claimed twice or used by the host", p)
		}
		seen[p.String()] = true
	}
	// A dead holder's claim is taken over.
	f := filepath.Join(claimDir, "dead")
	os.WriteFile(f, []byte("2147483646\n"), 0o644)
	if !claim(f) {
		t.Errorf("a dead process's claim was not taken over")
	}
	if claim(f) {
		t.Errorf("a live process's claim was taken twice")
	}
}

// TestOnlyTestPackagesImportTesting: no package that a binary may link
// imports "testing", except the test-support packages whose names end in
// "test" (nettest, ovstest, cephtest, kerneltest, …); this one included.
func TestOnlyTestPackagesImportTesting(t *testing.T) {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		gobin = p
	}
	cmd := exec.Command(gobin, "list", "-tags", "pacific", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		n++
		if len(f) == 0 || strings.HasSuffix(f[0], "test") || !slices.Contains(f[1:], "testing") {
			continue
		}
		t.Errorf("%s imports \"testing\" but is not a test-support package (its name does not end in \"test\")", f[0])
	}
	if n < 20 {
		t.Fatalf("go list saw only %d packages:\n%s", n, out)
	}
}

// TestPkgImportsNothingAbove: pkg/ holds only what the agent and the
// coordinator both import, so no pkg/ package, its tests included, reaches
// up into agent/, coordinator/ or lab/ (test harnesses live in internal/).
func TestPkgImportsNothingAbove(t *testing.T) {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		gobin = p
	}
	cmd := exec.Command(gobin, "list", "-tags", "pacific", "-f",
		"{{.ImportPath}}{{range .Imports}} {{.}}{{end}}{{range .TestImports}} {{.}}{{end}}{{range .XTestImports}} {{.}}{{end}}", "./pkg/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/strata-infra/strata/"
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		n++
		for _, imp := range f[1:] {
			rel, ok := strings.CutPrefix(imp, mod)
			if ok && !strings.HasPrefix(rel, "pkg/") && !strings.HasPrefix(rel, "internal/") {
				t.Errorf("%s imports %s: pkg/ may import only pkg/ (and test harnesses under internal/)", f[0], imp)
			}
		}
	}
	if n < 10 {
		t.Fatalf("go list saw only %d packages:\n%s", n, out)
	}
}

// TestSweepRemovesDeadProcessDirs: a test directory (MkdirTemp) of a pid
// that is gone is removed, and a process still running from it is killed;
// one of a live pid and one not named by MkdirTemp stay.
func TestSweepRemovesDeadProcessDirs(t *testing.T) {
	tmp := t.TempDir()
	dead := filepath.Join(tmp, "s13t-ceph.pid2147483646.42")
	live := filepath.Join(tmp, fmt.Sprintf("s15ovs.pid%d.43", os.Getpid()))
	other := filepath.Join(tmp, "strata-lab-dhcp-44")
	for _, d := range []string{dead, live, other} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A chroot's overlay left mounted in it (a tmpfs stands in): the
	// sweep unmounts it rather than remove through it.
	mnt := filepath.Join(dead, "root")
	if os.Geteuid() == 0 {
		os.Mkdir(mnt, 0o755)
		if err := syscall.Mount("s21sweep", mnt, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
		os.WriteFile(filepath.Join(mnt, "file"), nil, 0o644)
	}
	// A daemon left running from the dead process's directory.
	daemon := exec.Command("sh", "-c", "sleep 60", dead+"/ceph.conf")
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait() }()
	t.Cleanup(func() { daemon.Process.Kill() })

	stale := func(pid int) bool { return !Alive(pid) }
	removed := sweepDirs(tmp, stale)
	if len(removed) != 1 || !strings.Contains(removed[0], dead) || !strings.Contains(removed[0], "killed") {
		t.Errorf("sweep removed %q, want only %s with its daemon killed", removed, dead)
	}
	for d, want := range map[string]bool{dead: false, live: true, other: true} {
		if _, err := os.Stat(d); (err == nil) != want {
			t.Errorf("%s exists=%v after the sweep, want %v", d, err == nil, want)
		}
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), mnt) {
		t.Errorf("%s still mounted after the sweep", mnt)
	}
	select {
	case err := <-exited:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("the daemon running from %s ended with %v, want SIGKILL", dead, err)
		}
	case <-time.After(Scale(10 * time.Second)):
		t.Errorf("the daemon running from %s was not killed", dead)
	}
	d, err := MkdirTemp("s21x")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(d)
	if pid, ok := owner(dirPatterns, filepath.Base(d)); !ok || pid != os.Getpid() {
		t.Errorf("MkdirTemp made %s, which the sweep reads as pid %d, %v", d, pid, ok)
	}
}
