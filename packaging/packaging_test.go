// Package packaging holds the tests of Strata's packages, units and Ansible
// roles: they build the .deb and .rpm files with packaging/build.sh and
// check them with the distributions' own tools.
package packaging

import (
	"fmt"
	"github.com/strata-infra/strata/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The two versions the tests build: an upgrade goes from the first to the
// second.
const (
	oldVersion = "1.0.0+test1"
	newVersion = "1.0.0+test2"
)

var packageNames = []string{"strata-agent", "strata-coordinator", "stratactl"}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

func requireRoot(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t, "package builds run maintainer scripts, chroots and mounts")
}

// tool finds a binary or skips: packaging/testdeps.sh installs them all,
// and CI runs it, so a skip names the missing tool.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if name == "nfpm" {
		gopath, _ := exec.Command("go", "env", "GOPATH").Output()
		if p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "nfpm"); fileExists(p) {
			return p
		}
	}
	testenv.Missing(t, name, "not installed: run packaging/testdeps.sh")
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// builds caches one packaging/build.sh run per version for the whole test
// binary: each takes ~15 s.
type builds struct {
	mu   sync.Mutex
	dirs map[string]string
	root string
}

var built = &builds{dirs: map[string]string{}}

// packagesOf builds (once) the six packages of version v and returns
// their directory.
func packagesOf(t *testing.T, v string) string {
	t.Helper()
	nfpm := tool(t, "nfpm")
	built.mu.Lock()
	defer built.mu.Unlock()
	if d, ok := built.dirs[v]; ok {
		return d
	}
	if built.root == "" {
		d, err := testenv.MkdirTemp("strata-packages")
		if err != nil {
			t.Fatal(err)
		}
		built.root = d
	}
	out := filepath.Join(built.root, v)
	start := time.Now()
	cmd := exec.Command("bash", filepath.Join(repoRoot(), "packaging", "build.sh"), out)
	cmd.Env = append(os.Environ(), "VERSION="+v, "NFPM="+nfpm)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh %s: %v\n%s", v, err, b)
	}
	t.Logf("built the six packages of %s in %s", v, time.Since(start).Round(100*time.Millisecond))
	built.dirs[v] = out
	return out
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.root != "" {
		os.RemoveAll(built.root)
	}
	// t.Cleanup does not run after a panic or a -timeout.
	if os.Geteuid() == 0 {
		for _, l := range testenv.Sweep(os.Getpid()) {
			fmt.Fprintln(os.Stderr, "testenv sweep: removed", l)
		}
	}
	os.Exit(code)
}

// debFile and rpmFile name a built package file.
func debFile(dir, pkg, v string) string {
	return filepath.Join(dir, fmt.Sprintf("%s_%s-1_%s.deb", pkg, v, debArch()))
}

func rpmFile(dir, pkg, v string) string {
	return filepath.Join(dir, fmt.Sprintf("%s-%s-1.%s.rpm", pkg, v, rpmArch()))
}

func debArch() string { return runtime.GOARCH }

func rpmArch() string {
	if runtime.GOARCH == "amd64" {
		return "x86_64"
	}
	if runtime.GOARCH == "arm64" {
		return "aarch64"
	}
	return runtime.GOARCH
}

// TestMakePackagesBuildsSix: build.sh makes exactly the six files, with
// the version it was given and the files each package must carry.
func TestMakePackagesBuildsSix(t *testing.T) {
	requireRoot(t)
	dir := packagesOf(t, oldVersion)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 6 {
		t.Fatalf("want 6 package files, got %v", names)
	}
	for _, p := range packageNames {
		for _, f := range []string{debFile(dir, p, oldVersion), rpmFile(dir, p, oldVersion)} {
			if !fileExists(f) {
				t.Errorf("missing %s in %v", f, names)
			}
		}
	}
	want := map[string][]string{
		"strata-agent":       {"./usr/bin/strata-agent", "./usr/lib/strata/strata-rbd", "./lib/systemd/system/strata-agent.service", "./etc/strata/agent.yaml"},
		"strata-coordinator": {"./usr/bin/strata-coordinator", "./lib/systemd/system/strata-coordinator.service", "./etc/strata/coordinator.yaml"},
		"stratactl":          {"./usr/bin/stratactl"},
	}
	for p, files := range want {
		list := run(t, "dpkg-deb", "-c", debFile(dir, p, oldVersion))
		for _, f := range files {
			if !strings.Contains(list, " "+f+"\n") {
				t.Errorf("%s.deb lacks %s:\n%s", p, f, list)
			}
		}
		if p != "stratactl" {
			conf := run(t, "dpkg-deb", "-I", debFile(dir, p, oldVersion), "conffiles")
			if !strings.Contains(conf, "/etc/strata/") {
				t.Errorf("%s.deb: config not a conffile: %q", p, conf)
			}
			rpmConf := run(t, "rpm", "-qp", "--configfiles", rpmFile(dir, p, oldVersion))
			if !strings.Contains(rpmConf, "/etc/strata/") {
				t.Errorf("%s.rpm: config not %%config: %q", p, rpmConf)
			}
			if units := run(t, "rpm", "-qpl", rpmFile(dir, p, oldVersion)); !strings.Contains(units, "/usr/lib/systemd/system/"+p+".service") {
				t.Errorf("%s.rpm: unit not in /usr/lib/systemd/system:\n%s", p, units)
			}
		}
	}
	// Hard dependencies are what every agent needs; a driver's tools are
	// recommended (or suggested), so a host can leave out what it does not use.
	for field, want := range map[string][]string{
		"Depends":    {"librbd1", "librados2", "dnsmasq-base", "dnsmasq-utils", "nftables", "iproute2"},
		"Recommends": {"libvirt-daemon-system", "qemu-system-x86", "qemu-utils", "openvswitch-switch", "ceph-common"},
		"Suggests":   {"dmsetup"},
	} {
		got := run(t, "dpkg-deb", "-f", debFile(dir, "strata-agent", oldVersion), field)
		for _, d := range want {
			if !strings.Contains(got, d) {
				t.Errorf("strata-agent.deb: no %s in %s", d, got)
			}
		}
	}
	if deps := run(t, "dpkg-deb", "-f", debFile(dir, "strata-agent", oldVersion), "Depends"); strings.Contains(deps, "libvirt") ||
		strings.Contains(deps, "qemu") || strings.Contains(deps, "openvswitch") || strings.Contains(deps, "ceph-common") {
		t.Errorf("strata-agent.deb depends on a driver's tools: %s", deps)
	}
}

// TestLintian: lintian --pedantic reports nothing on the .deb files but
// the tags each package overrides (packaging/lintian/<pkg>), and each
// override has its reason in a comment above it.
func TestLintian(t *testing.T) {
	requireRoot(t)
	lintian := tool(t, "lintian")
	dir := packagesOf(t, oldVersion)
	var debs []string
	for _, p := range packageNames {
		debs = append(debs, debFile(dir, p, oldVersion))
	}
	start := time.Now()
	out, err := exec.Command(lintian, append([]string{"--allow-root", "--pedantic", "--fail-on", "error,warning,pedantic"}, debs...)...).CombinedOutput()
	t.Logf("lintian (%s):\n%s", time.Since(start).Round(100*time.Millisecond), out)
	for _, line := range strings.Split(string(out), "\n") {
		if len(line) > 2 && strings.Contains("EWIPX", line[:1]) && line[1] == ':' {
			t.Errorf("lintian: %s", line)
		}
	}
	if err != nil {
		t.Fatalf("lintian: %v", err)
	}
	for _, p := range packageNames {
		b, err := os.ReadFile(filepath.Join(repoRoot(), "packaging", "lintian", p))
		if err != nil {
			t.Fatal(err)
		}
		reason := false
		for _, line := range strings.Split(string(b), "\n") {
			switch {
			case strings.HasPrefix(line, "#"):
				reason = true
			case strings.TrimSpace(line) == "":
			case !reason:
				t.Errorf("packaging/lintian/%s: override %q has no reason above it", p, line)
			default:
				reason = false
			}
		}
	}
}

// TestRpmlint: rpmlint reports no error and no warning on the .rpm files
// but those packaging/rpmlint.toml filters, each with its reason. nfpm writes
// absolute paths into the rpm's cpio payload and rpmlint unpacks it with a
// plain "cpio -id", which would write the files over this machine's /usr;
// a cpio on PATH that adds --no-absolute-filenames keeps them in
// rpmlint's temp dir (and lets it see the ELF binaries).
func TestRpmlint(t *testing.T) {
	requireRoot(t)
	rpmlint := tool(t, "rpmlint")
	cpio := tool(t, "cpio")
	dir := packagesOf(t, oldVersion)
	wrap := t.TempDir()
	script := "#!/bin/sh\nexec " + cpio + " --no-absolute-filenames \"$@\"\n"
	if err := os.WriteFile(filepath.Join(wrap, "cpio"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"-c", filepath.Join(repoRoot(), "packaging", "rpmlint.toml")}
	for _, p := range packageNames {
		args = append(args, rpmFile(dir, p, oldVersion))
	}
	cmd := exec.Command(rpmlint, args...)
	cmd.Env = append(os.Environ(), "PATH="+wrap+":"+os.Getenv("PATH"))
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	t.Logf("rpmlint:\n%s", out)
	if err != nil || !strings.Contains(string(out), " 0 errors, 0 warnings") {
		t.Fatalf("rpmlint: %v", err)
	}
	for _, p := range []string{"/usr/bin/strata-agent", "/usr/share/licenses/strata-agent"} {
		if fileExists(p) {
			t.Errorf("rpmlint unpacked %s onto this machine", p)
		}
	}
}

// TestSystemdVerify: systemd-analyze verify accepts both units, with the
// binaries where the packages put them, in a root of their own.
func TestSystemdVerify(t *testing.T) {
	analyze := tool(t, "systemd-analyze")
	root, units := unitRoot(t)
	sys := filepath.Join(root, "lib", "systemd", "system")
	out, err := exec.Command(analyze, append([]string{"verify", "--root=" + root}, units...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The check has teeth: a typo is reported.
	bad := filepath.Join(sys, "strata-bad.service")
	os.WriteFile(bad, []byte("[Service]\nTyep=notify\nExecStart=/usr/bin/strata-agent\n"), 0o644)
	if out, _ := exec.Command(analyze, "verify", "--root="+root, "/lib/systemd/system/strata-bad.service").CombinedOutput(); !strings.Contains(string(out), "Tyep") {
		t.Errorf("a misspelt key went unreported: %s", out)
	}
}

// unitRoot is a root holding both units, the binaries they run where the
// packages put them, and this machine's targets and slices; it returns
// the units' paths inside it.
func unitRoot(t *testing.T) (root string, units []string) {
	root = t.TempDir()
	sys := filepath.Join(root, "lib", "systemd", "system")
	for _, d := range []string{sys, filepath.Join(root, "usr", "bin"), filepath.Join(root, "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The targets and slices the units refer to, from this machine.
	host, _ := filepath.Glob("/lib/systemd/system/*.target")
	slices, _ := filepath.Glob("/lib/systemd/system/*.slice")
	for _, f := range append(host, slices...) {
		if b, err := os.ReadFile(f); err == nil {
			os.WriteFile(filepath.Join(sys, filepath.Base(f)), b, 0o644)
		}
	}
	for _, b := range []string{"usr/bin/strata-agent", "usr/bin/strata-coordinator", "bin/kill"} {
		if err := os.WriteFile(filepath.Join(root, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"strata-agent.service", "strata-coordinator.service"} {
		b, err := os.ReadFile(filepath.Join(repoRoot(), "systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, u), b, 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, "/lib/systemd/system/"+u)
	}
	return root, units
}

// TestSystemdSecurity prints systemd-analyze security's table and score
// for both units, holds each score at or below what the units reach now
// (a dropped hardening option fails), and checks that every exposure left
// has its one-line reason in the unit ("#  Setting=: why").
func TestSystemdSecurity(t *testing.T) {
	analyze := tool(t, "systemd-analyze")
	root, units := unitRoot(t)
	ceiling := map[string]float64{"strata-agent.service": 4.9, "strata-coordinator.service": 1.1}
	overall := regexp.MustCompile(`Overall exposure level for (\S+): ([0-9.]+)`)
	for _, u := range units {
		name := filepath.Base(u)
		out, err := exec.Command(analyze, "security", "--offline=true", "--no-pager", "--root="+root, u).CombinedOutput()
		t.Logf("systemd-analyze security %s:\n%s", name, out)
		m := overall.FindStringSubmatch(string(out))
		if err != nil || m == nil {
			t.Fatalf("systemd-analyze security %s: %v", name, err)
		}
		score, _ := strconv.ParseFloat(m[2], 64)
		fmt.Printf("SECURITY %s exposure %.1f (ceiling %.1f)\n", name, score, ceiling[name])
		if score > ceiling[name] {
			t.Errorf("%s: exposure %.1f, above %.1f: a hardening option was dropped", name, score, ceiling[name])
		}
		unit, err := os.ReadFile(filepath.Join(repoRoot(), "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		exposures := 0
		for _, line := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(line, "✗ ") {
				continue
			}
			exposures++
			setting := strings.Fields(strings.TrimPrefix(line, "✗ "))[0]
			if !reasoned(string(unit), setting) {
				t.Errorf("%s: exposure %s has no reason in the unit (a comment line \"#  %s: why\")", name, setting, setting)
			}
		}
		if exposures == 0 {
			t.Errorf("%s: no exposure rows parsed from the output", name)
		}
	}
}

// reasoned: a comment line of the unit names setting before its reason
// ("#  A=, B=: why" covers A= and B=).
func reasoned(unit, setting string) bool {
	for _, line := range strings.Split(unit, "\n") {
		head, _, ok := strings.Cut(strings.TrimPrefix(line, "#  "), ": ")
		if !ok || !strings.HasPrefix(line, "#  ") {
			continue
		}
		for _, s := range strings.Split(head, ", ") {
			if s == setting {
				return true
			}
		}
	}
	return false
}
