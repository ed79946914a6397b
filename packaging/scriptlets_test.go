package packaging

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// stubs writes deb-systemd-helper, deb-systemd-invoke and systemctl into
// a new directory; inside the script's root that directory is /stubs, and
// each stub logs its arguments, one call a line, to /stubs/calls.
func stubs(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	for _, n := range []string{"deb-systemd-helper", "deb-systemd-invoke", "systemctl"} {
		s := "#!/bin/sh\necho \"" + n + " $*\" >>/stubs/calls\nexit 0\n"
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// scriptRoot is the shell that runs a maintainer script in a throwaway
// root, never on the host: in a private mount namespace it mounts a tmpfs
// on $1, binds the host's /usr read-only into it (the script's shell and
// tools) and /dev/null, zero and urandom, binds the stubs directory $2 on
// /stubs, seeds the agent's state
// directory, adds /run/systemd/system when $3 is 1 (a booted host), and
// chroots. After the script it records whether the state survived.
const scriptRoot = `set -e
root=$1 stubs=$2 systemd=$3
shift 3
mount -t tmpfs s21-scriptlet "$root"
mkdir -p "$root/usr" "$root/stubs" "$root/tmp" "$root/etc/strata" "$root/var/lib/strata/agent" "$root/run"
mount --bind /usr "$root/usr"
mount -o remount,bind,ro "$root/usr"
mount --bind "$stubs" "$root/stubs"
mkdir "$root/dev"
for d in null zero urandom; do : >"$root/dev/$d"; mount --bind "/dev/$d" "$root/dev/$d"; done
for d in bin sbin lib lib64; do
	if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$root/$d"
	elif [ -d "/$d" ]; then mkdir "$root/$d"; mount --bind "/$d" "$root/$d"; mount -o remount,bind,ro "$root/$d"
	fi
done
echo state >"$root/var/lib/strata/agent/state"
if [ "$systemd" = 1 ]; then mkdir -p "$root/run/systemd/system"; fi
rc=0
chroot "$root" /bin/sh /stubs/script "$@" || rc=$?
if [ -e "$root/var/lib/strata/agent/state" ]; then echo kept >"$root/stubs/state"; else echo removed >"$root/stubs/state"; fi
exit $rc
`

// scriptRun is what one maintainer script run did.
type scriptRun struct {
	calls        []string // helper calls, in order
	stateRemoved bool     // the script removed the agent state in its root
}

// runScript runs one maintainer script with args in a throwaway root (see
// scriptRoot) and returns the helper calls it made. With systemd true the
// root has /run/systemd/system, as on a booted host; otherwise it has not
// (as in a chroot, or this machine without systemd as PID 1).
func runScript(t *testing.T, script string, systemd bool, args ...string) []string {
	t.Helper()
	return runScriptIn(t, script, systemd, args...).calls
}

func runScriptIn(t *testing.T, script string, systemd bool, args ...string) scriptRun {
	t.Helper()
	dir := stubs(t)
	if err := os.WriteFile(filepath.Join(dir, "script"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	sd := "0"
	if systemd {
		sd = "1"
	}
	root := t.TempDir()
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", scriptRoot, "sh", root, dir, sd}, args...)...)
	cmd.Env = []string{"PATH=/stubs:/usr/sbin:/usr/bin:/sbin:/bin"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	var r scriptRun
	b, _ := os.ReadFile(filepath.Join(dir, "calls"))
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			r.calls = append(r.calls, l)
		}
	}
	st, err := os.ReadFile(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatalf("the script's root left no state record: %v", err)
	}
	r.stateRemoved = strings.TrimSpace(string(st)) == "removed"
	return r
}

// debScripts extracts a .deb's maintainer scripts.
func debScripts(t *testing.T, deb string) map[string]string {
	t.Helper()
	d := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, d)
	out := map[string]string{}
	for _, n := range []string{"postinst", "prerm", "postrm", "preinst"} {
		if b, err := os.ReadFile(filepath.Join(d, n)); err == nil {
			out[n] = string(b)
		}
	}
	return out
}

// rpmScripts parses `rpm -qp --scripts` into scriptlet -> body.
func rpmScripts(t *testing.T, rpm string) map[string]string {
	t.Helper()
	out := run(t, "rpm", "-qp", "--scripts", rpm)
	head := regexp.MustCompile(`(?m)^(\w+) scriptlet(?: \(using [^)]*\))?:$`)
	locs := head.FindAllStringSubmatchIndex(out, -1)
	m := map[string]string{}
	for i, l := range locs {
		end := len(out)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		m[out[l[2]:l[3]]] = out[l[1]+1 : end]
	}
	return m
}

type scriptCase struct {
	script  string
	systemd bool
	args    []string
	want    []string // exact calls, in order; "" entries are never expected
}

func checkCases(t *testing.T, scripts map[string]string, unit string, cases []scriptCase) {
	t.Helper()
	for _, c := range cases {
		body, ok := scripts[c.script]
		if !ok {
			t.Fatalf("no %s scriptlet in %v", c.script, keys(scripts))
		}
		got := runScript(t, body, c.systemd, c.args...)
		want := make([]string, len(c.want))
		for i, w := range c.want {
			want[i] = strings.ReplaceAll(w, "UNIT", unit)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s %v (systemd running: %v):\n got  %q\n want %q", c.script, c.args, c.systemd, got, want)
		}
	}
}

func keys(m map[string]string) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	return k
}

// TestDebScriptletArguments runs the agent's deb maintainer scripts with
// each argument dpkg passes, with and without systemd running: install
// enables without starting, upgrade keeps the unit enabled and
// try-restarts it, remove stops and disables, and nothing touches
// systemctl where systemd is not running.
func TestDebScriptletArguments(t *testing.T) {
	requireRoot(t)
	tool(t, "unshare")
	s := debScripts(t, debFile(packagesOf(t, oldVersion), "strata-agent", oldVersion))
	enable := []string{"deb-systemd-helper unmask UNIT", "deb-systemd-helper --quiet was-enabled UNIT", "deb-systemd-helper enable UNIT"}
	checkCases(t, s, "strata-agent.service", []scriptCase{
		{"postinst", true, []string{"configure", ""}, append(enable, "systemctl --system daemon-reload")},
		{"postinst", true, []string{"configure", "0.9-1"}, append(enable, "systemctl --system daemon-reload", "deb-systemd-invoke try-restart UNIT")},
		{"postinst", false, []string{"configure", ""}, enable},
		{"postinst", false, []string{"configure", "0.9-1"}, enable},
		{"postinst", true, []string{"abort-upgrade", "1.1-1"}, append(enable, "systemctl --system daemon-reload", "deb-systemd-invoke try-restart UNIT")},
		{"prerm", true, []string{"upgrade", "1.1-1"}, nil},
		{"prerm", true, []string{"remove"}, []string{"deb-systemd-invoke stop UNIT", "deb-systemd-helper purge UNIT"}},
		{"prerm", false, []string{"remove"}, []string{"deb-systemd-helper purge UNIT"}},
		{"postrm", true, []string{"upgrade", "1.1-1"}, nil},
		{"postrm", true, []string{"remove"}, []string{"systemctl --system daemon-reload"}},
		{"postrm", false, []string{"remove"}, nil},
		{"postrm", true, []string{"purge"}, []string{"deb-systemd-helper purge UNIT", "deb-systemd-helper unmask UNIT", "systemctl --system daemon-reload"}},
		{"postrm", false, []string{"purge"}, []string{"deb-systemd-helper purge UNIT", "deb-systemd-helper unmask UNIT"}},
	})
	// The coordinator's scripts are the same template; spot-check the unit.
	c := debScripts(t, debFile(packagesOf(t, oldVersion), "strata-coordinator", oldVersion))
	checkCases(t, c, "strata-coordinator.service", []scriptCase{
		{"postinst", true, []string{"configure", "0.9-1"}, append(enable, "systemctl --system daemon-reload", "deb-systemd-invoke try-restart UNIT")},
		{"prerm", true, []string{"remove"}, []string{"deb-systemd-invoke stop UNIT", "deb-systemd-helper purge UNIT"}},
	})
	if !strings.Contains(c["preinst"], "useradd --system") {
		t.Errorf("coordinator preinst does not create the strata user:\n%s", c["preinst"])
	}
	a := debScripts(t, debFile(packagesOf(t, oldVersion), "strata-agent", oldVersion))
	if !strings.Contains(a["preinst"], "useradd --system") || !strings.Contains(a["preinst"], "strata-dnsmasq") {
		t.Errorf("agent preinst does not create the strata-dnsmasq user:\n%s", a["preinst"])
	}
}

// TestScriptletsTouchNothingOutsideChroot runs the agent's postrm purge,
// which removes /var/lib/strata/agent, with a marker planted there on the
// host: the purge empties the state of its own root and leaves the host's
// marker untouched. The test creates the marker (and its directories) only
// where absent, and removes only what it created.
func TestScriptletsTouchNothingOutsideChroot(t *testing.T) {
	requireRoot(t)
	tool(t, "unshare")
	s := debScripts(t, debFile(packagesOf(t, oldVersion), "strata-agent", oldVersion))
	marker := "/var/lib/strata/agent/marker"
	want := fmt.Sprintf("s21 %d\n", os.Getpid())
	made := plant(t, marker, want)
	for _, systemd := range []bool{false, true} {
		r := runScriptIn(t, s["postrm"], systemd, "purge")
		if !r.stateRemoved {
			t.Errorf("postrm purge (systemd %v) kept the agent state in its root: the purge did not run", systemd)
		}
		got, err := os.ReadFile(marker)
		if err != nil || (made && string(got) != want) {
			t.Fatalf("postrm purge (systemd %v) touched the host: %s: %q, %v", systemd, marker, got, err)
		}
	}
}

// plant makes path with content unless it exists, creating only the
// directories that are missing, and registers the removal of exactly what
// it made. It reports whether it made the file.
func plant(t *testing.T, path, content string) bool {
	t.Helper()
	var made []string
	for d := filepath.Dir(path); !fileExists(d); d = filepath.Dir(d) {
		made = append(made, d)
	}
	t.Cleanup(func() {
		for _, d := range made { // deepest first; Remove keeps a non-empty one
			os.Remove(d)
		}
	})
	for i := len(made) - 1; i >= 0; i-- {
		if err := os.Mkdir(made[i], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		t.Logf("%s already exists: checking it stays", path)
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	_, err = f.WriteString(content)
	if err := errors.Join(err, f.Close()); err != nil {
		t.Fatal(err)
	}
	return true
}

// TestRPMScriptletArguments checks `rpm -qp --scripts` of the agent's rpm
// by running each scriptlet with the counts rpm passes: %post 1 install /
// 2 upgrade, %preun and %postun 0 removal / 1 upgrade.
func TestRPMScriptletArguments(t *testing.T) {
	requireRoot(t)
	tool(t, "rpm")
	tool(t, "unshare")
	s := rpmScripts(t, rpmFile(packagesOf(t, oldVersion), "strata-agent", oldVersion))
	checkCases(t, s, "strata-agent.service", []scriptCase{
		{"postinstall", true, []string{"1"}, []string{"systemctl --system daemon-reload", "systemctl --no-reload preset UNIT"}},
		{"postinstall", true, []string{"2"}, []string{"systemctl --system daemon-reload"}},
		{"postinstall", false, []string{"1"}, []string{"systemctl --no-reload preset UNIT"}},
		{"postinstall", false, []string{"2"}, nil},
		{"preuninstall", true, []string{"0"}, []string{"systemctl stop UNIT", "systemctl --no-reload disable UNIT"}},
		{"preuninstall", true, []string{"1"}, nil},
		{"preuninstall", false, []string{"0"}, []string{"systemctl --no-reload disable UNIT"}},
		{"postuninstall", true, []string{"0"}, []string{"systemctl --system daemon-reload"}},
		{"postuninstall", true, []string{"1"}, []string{"systemctl --system daemon-reload", "systemctl try-restart UNIT"}},
		{"postuninstall", false, []string{"1"}, nil},
	})
	c := rpmScripts(t, rpmFile(packagesOf(t, oldVersion), "strata-coordinator", oldVersion))
	if !strings.Contains(c["preinstall"], "useradd --system") {
		t.Errorf("coordinator %%pre does not create the strata user: %v", keys(c))
	}
}
