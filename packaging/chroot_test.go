package packaging

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
)

const suite = "bookworm"

// debMirror is the Debian archive this machine's apt uses for suite, so
// the chroot comes from the same place; "" lets debootstrap pick.
func debMirror() string {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, stanza := range strings.Split(string(b), "\n\n") {
			var uri string
			hasSuite := false
			for _, l := range strings.Split(stanza, "\n") {
				k, v, _ := strings.Cut(l, ":")
				switch strings.TrimSpace(k) {
				case "URIs":
					uri = strings.Fields(v + " x")[0]
				case "Suites":
					for _, s := range strings.Fields(v) {
						hasSuite = hasSuite || s == suite
					}
				}
			}
			if uri != "" && hasSuite {
				return uri
			}
		}
	}
	if f, err := os.Open("/etc/apt/sources.list"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if fl := strings.Fields(sc.Text()); len(fl) >= 3 && fl[0] == "deb" && fl[2] == suite {
				return fl[1]
			}
		}
	}
	return ""
}

// chrootBase returns a Debian chroot (minbase) with the agent's runtime
// dependencies installed, made once per machine under chrootCache()
// and keyed by suite and dependency list. It is only ever read: each test
// works on an overlay of it.
func chrootBase(t *testing.T, depends string) string {
	t.Helper()
	debootstrap := tool(t, "debootstrap")
	// Ansible's apt module runs inside the roots of the rolling upgrade.
	depends += ", python3-apt"
	sum := sha256.Sum256([]byte(depends))
	dir := filepath.Join(chrootCache(), fmt.Sprintf("%s-minbase-%x", suite, sum[:4]))
	if fileExists(filepath.Join(dir, ".complete")) {
		return dir
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	args := []string{"--variant=minbase", suite, dir}
	if m := debMirror(); m != "" {
		args = append(args, m)
	}
	if out, err := exec.Command(debootstrap, args...).CombinedOutput(); err != nil {
		t.Fatalf("debootstrap: %v\n%s", err, tail(out))
	}
	t.Logf("debootstrap %s minbase: %s", suite, time.Since(start).Round(time.Second))
	// No service starts inside the chroot, whatever a package asks.
	if err := os.WriteFile(filepath.Join(dir, "usr/sbin/policy-rc.d"), []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	proc := filepath.Join(dir, "proc")
	if err := syscall.Mount("proc", proc, "proc", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer syscall.Unmount(proc, syscall.MNT_DETACH)
	deps := time.Now()
	var pkgs []string
	for _, d := range strings.Split(depends, ",") {
		// "a (>= 1) | b" -> a: the first alternative, no version.
		d = strings.TrimSpace(strings.Split(d, "|")[0])
		if name := strings.Fields(d); len(name) > 0 {
			pkgs = append(pkgs, name[0])
		}
	}
	chrootRun(t, dir, "apt-get", "-q", "update")
	chrootRun(t, dir, append([]string{"apt-get", "-q", "-y", "--no-install-recommends", "install"}, pkgs...)...)
	chrootRun(t, dir, "apt-get", "clean")
	t.Logf("agent dependencies (%s) installed in the chroot: %s", strings.Join(pkgs, " "), time.Since(deps).Round(time.Second))
	if err := os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// chrootCache is where base chroots are kept between runs:
// STRATA_TEST_CACHE, else /var/cache/strata-test/debootstrap. It lies
// outside the checkout because CI clones afresh each run, and the base (a
// debootstrap plus the agent's dependencies) takes minutes to make.
func chrootCache() string {
	if d := os.Getenv("STRATA_TEST_CACHE"); d != "" {
		return filepath.Join(d, "debootstrap")
	}
	return "/var/cache/strata-test/debootstrap"
}

func chrootRun(t *testing.T, root string, argv ...string) string {
	t.Helper()
	out, err := chrootCmd(root, argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("chroot %s: %v\n%s", strings.Join(argv, " "), err, tail(out))
	}
	return string(out)
}

func chrootCmd(root string, argv ...string) *exec.Cmd {
	cmd := exec.Command("chroot", append([]string{root}, argv...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"}
	return cmd
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// overlay mounts a writable overlay of base and returns its root; the
// cleanup unmounts it even when the test fails, and the sweep after a
// -timeout or a panic (testenv.MkdirTemp names the directory for it).
func overlay(t *testing.T, base string) string {
	t.Helper()
	d, err := testenv.MkdirTemp("strata-chroot")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	upper, work, merged := filepath.Join(d, "upper"), filepath.Join(d, "work"), filepath.Join(d, "root")
	for _, p := range []string{upper, work, merged} {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", base, upper, work)
	if err := syscall.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		testenv.Missing(t, "overlayfs", fmt.Sprintf("mount failed (%v): cannot work on a copy of the cached chroot", err))
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(merged, 0); err != nil {
			syscall.Unmount(merged, syscall.MNT_DETACH)
		}
	})
	return merged
}

// TestDebInstallUpgradeRemove installs the three .deb files in a Debian
// chroot without systemd, upgrades them to a newer build, then removes and
// purges them: every maintainer script must succeed there, the units must
// be enabled (not started) after install and stay enabled across the
// upgrade, an edited config must survive the upgrade, and removal must
// disable the units.
func TestDebInstallUpgradeRemove(t *testing.T) {
	requireRoot(t)
	tool(t, "chroot")
	oldDir, newDir := packagesOf(t, oldVersion), packagesOf(t, newVersion)
	depends := run(t, "dpkg-deb", "-f", debFile(oldDir, "strata-agent", oldVersion), "Depends")
	depends = strings.TrimSpace(strings.TrimPrefix(depends, "Depends:"))
	base := chrootBase(t, depends)
	start := time.Now()
	root := overlay(t, base)
	if fileExists(filepath.Join(root, "run/systemd/system")) {
		t.Fatal("the chroot claims a running systemd")
	}
	stage := filepath.Join(root, "tmp", "pkgs")
	os.MkdirAll(stage, 0o755)
	install := func(dir, v string) {
		t.Helper()
		var args []string
		for _, p := range packageNames {
			b, err := os.ReadFile(debFile(dir, p, v))
			if err != nil {
				t.Fatal(err)
			}
			name := filepath.Base(debFile(dir, p, v))
			os.WriteFile(filepath.Join(stage, name), b, 0o644)
			args = append(args, "/tmp/pkgs/"+name)
		}
		cmd := chrootCmd(root, append([]string{"dpkg", "-i"}, args...)...)
		cmd.Stdin = nil // a conffile prompt would read EOF and fail
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dpkg -i %s: %v\n%s", v, err, tail(out))
		}
	}
	wants := func(unit string) string {
		return filepath.Join(root, "etc/systemd/system/multi-user.target.wants", unit)
	}
	enabled := func(unit string) bool { _, err := os.Lstat(wants(unit)); return err == nil }
	version := func(bin string) string { return chrootRun(t, root, bin, "--version") }

	install(oldDir, oldVersion)
	for _, u := range []string{"strata-agent.service", "strata-coordinator.service"} {
		if !enabled(u) {
			t.Errorf("%s not enabled after install", u)
		}
	}
	if v := version("strata-agent"); !strings.Contains(v, oldVersion) {
		t.Errorf("installed agent reports %q, want %s", v, oldVersion)
	}
	if out := chrootRun(t, root, "getent", "passwd", "strata"); !strings.Contains(out, "/var/lib/strata") {
		t.Errorf("no strata user: %q", out)
	}
	cfg := filepath.Join(root, "etc/strata/agent.yaml")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "# edited by the operator")
	f.Close()
	os.MkdirAll(filepath.Join(root, "var/lib/strata/agent"), 0o700)
	os.WriteFile(filepath.Join(root, "var/lib/strata/agent/plan.json"), []byte("{}"), 0o600)

	install(newDir, newVersion)
	for _, u := range []string{"strata-agent.service", "strata-coordinator.service"} {
		if !enabled(u) {
			t.Errorf("%s not enabled after upgrade", u)
		}
	}
	if v := version("strata-agent"); !strings.Contains(v, newVersion) {
		t.Errorf("upgraded agent reports %q, want %s", v, newVersion)
	}
	if b, _ := os.ReadFile(cfg); !strings.Contains(string(b), "edited by the operator") {
		t.Errorf("upgrade replaced the edited %s", cfg)
	}

	chrootRun(t, root, "dpkg", "-r", "strata-agent", "strata-coordinator", "stratactl")
	for _, u := range []string{"strata-agent.service", "strata-coordinator.service"} {
		if enabled(u) {
			t.Errorf("%s still enabled after remove", u)
		}
	}
	if fileExists(filepath.Join(root, "usr/bin/strata-agent")) || !fileExists(cfg) {
		t.Errorf("remove: binary should be gone and config kept")
	}
	chrootRun(t, root, "dpkg", "-P", "strata-agent", "strata-coordinator", "stratactl")
	if fileExists(cfg) || fileExists(filepath.Join(root, "var/lib/strata/agent")) {
		t.Errorf("purge left the config or the agent state")
	}
	// Purged packages are forgotten: dpkg-query finds none of them.
	if out, err := chrootCmd(root, "dpkg-query", "-W", "strata-agent", "strata-coordinator", "stratactl").CombinedOutput(); err == nil {
		t.Errorf("packages left after purge: %s", out)
	}
	t.Logf("install %s, upgrade to %s, remove and purge in the chroot: %s", oldVersion, newVersion, time.Since(start).Round(100*time.Millisecond))
}
