package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// stubs writes deb-systemd-helper, deb-systemd-invoke and systemctl that
// log their arguments, one call a line, to the returned log file.
func stubs(t *testing.T) (dir, log string) {
	t.Helper()
	dir = t.TempDir()
	log = filepath.Join(dir, "calls")
	for _, n := range []string{"deb-systemd-helper", "deb-systemd-invoke", "systemctl"} {
		s := "#!/bin/sh\necho \"" + n + " $*\" >>" + log + "\nexit 0\n"
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, log
}

// runScript runs one maintainer script with args and returns the helper
// calls it made. With systemd true it runs in a private mount namespace
// where /run/systemd/system exists, as on a booted host; otherwise it runs
// where it does not (this machine, like a chroot, has no systemd as PID 1).
func runScript(t *testing.T, script string, systemd bool, args ...string) []string {
	t.Helper()
	dir, log := stubs(t)
	path := filepath.Join(dir, "script")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	if systemd {
		sh := `mount -t tmpfs strata-test /run/systemd && mkdir /run/systemd/system && exec sh "$0" "$@"`
		cmd = exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", sh, path}, args...)...)
	} else {
		cmd = exec.Command("sh", append([]string{path}, args...)...)
	}
	cmd.Env = []string{"PATH=" + dir + ":/usr/sbin:/usr/bin:/sbin:/bin"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
	b, _ := os.ReadFile(log)
	var calls []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			calls = append(calls, l)
		}
	}
	return calls
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
		{"postinstall", true, []string{"1"}, []string{"systemctl --system daemon-reload", "systemctl --no-reload enable UNIT"}},
		{"postinstall", true, []string{"2"}, []string{"systemctl --system daemon-reload"}},
		{"postinstall", false, []string{"1"}, []string{"systemctl --no-reload enable UNIT"}},
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
