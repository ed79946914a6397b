// Package testenv decides what a test does when a real part it needs (root,
// a binary, a kernel feature, a daemon) is missing, and how long its waits
// may take.
//
// Outside CI a missing part skips the test with the reason. With
// STRATA_STRICT=1 (set by .ci/run) it fails the test naming the part, so a
// CI machine that lost a package cannot turn real tests into silent skips.
//
// Every wait scales with STRATA_TIMEOUT_FACTOR (default 1): a slow or
// shared machine raises the factor instead of each test guessing.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// StrictEnv and FactorEnv are the environment variables this package reads.
const (
	StrictEnv = "STRATA_STRICT"
	FactorEnv = "STRATA_TIMEOUT_FACTOR"
)

// TB is the part of testing.TB used here; *testing.T and *testing.B satisfy it.
type TB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Strict reports whether a missing part fails tests instead of skipping them.
func Strict() bool { return os.Getenv(StrictEnv) == "1" }

// Missing ends t because part is missing: it fails in strict mode and skips
// otherwise. reason says why the test needs it or how to install it.
func Missing(t TB, part, reason string) {
	t.Helper()
	if Strict() {
		t.Fatalf("missing %s (%s=1 fails instead of skipping): %s", part, StrictEnv, reason)
		return
	}
	t.Skipf("missing %s: %s", part, reason)
}

// Require ends t as Missing does when err (the probe of part) is not nil.
func Require(t TB, part string, err error) {
	t.Helper()
	if err != nil {
		Missing(t, part, err.Error())
	}
}

// RequireRoot ends t unless it runs as root; why says what needs root.
func RequireRoot(t TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "root", "needs root: "+why)
	}
}

// RequireBinary returns the paths of the named programs, found in PATH or in
// /usr/sbin and /sbin (which a non-login root shell may lack), and ends t
// naming the first one that is missing.
func RequireBinary(t TB, names ...string) []string {
	t.Helper()
	paths := make([]string, 0, len(names))
	for _, n := range names {
		p, err := LookBinary(n)
		if err != nil {
			Missing(t, n, err.Error())
			return nil
		}
		paths = append(paths, p)
	}
	return paths
}

// LookBinary finds a program in PATH, then in /usr/sbin and /sbin.
func LookBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH, /usr/sbin or /sbin", name)
}

// Factor is STRATA_TIMEOUT_FACTOR, the multiplier of every test deadline;
// 1 when unset or not a positive number.
func Factor() float64 {
	f, err := strconv.ParseFloat(os.Getenv(FactorEnv), 64)
	if err != nil || f <= 0 {
		return 1
	}
	return f
}

// Scale multiplies d by Factor.
func Scale(d time.Duration) time.Duration {
	return time.Duration(float64(d) * Factor())
}

// SharedTempDir is t.TempDir() made traversable (0711) with the directory
// the test framework made above it, for a process that drops privileges
// (dnsmasq) and must still reach files under it. Nothing in it becomes
// listable or readable by others.
func SharedTempDir(t interface {
	TB
	TempDir() string
}) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{d, filepath.Dir(d)} {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatalf("make %s traversable: %v", p, err)
		}
	}
	return d
}
