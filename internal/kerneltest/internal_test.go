package kerneltest

import (
	"context"
	"errors"
	"fmt"
	"github.com/strata-infra/strata/internal/testenv"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseConsole(t *testing.T) {
	tests := []struct {
		name, console string
		output        string
		code          int
		started       bool
	}{
		{"passed", "[ 1.0] boot noise\r\n<<<strata-kerneltest start>>>\r\n=== RUN   TestX\r\nPASS\r\n<<<strata-kerneltest exit=0>>>\r\n[ 2.0] reboot: Power down\r\n",
			"=== RUN   TestX\nPASS\n", 0, true},
		{"failed", "<<<strata-kerneltest start>>>\nFAIL\n<<<strata-kerneltest exit=1>>>\n", "FAIL\n", 1, true},
		{"kernel line before the marker on the same line", "<<<strata-kerneltest start>>>\nok\n[ 3.1] x<<<strata-kerneltest exit=2>>>\n", "ok\n[ 3.1] x", 2, true},
		{"hung", "<<<strata-kerneltest start>>>\nhanging\n", "hanging\n", -1, true},
		{"never started", "Kernel panic - not syncing\n", "", -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code, started := parseConsole(tt.console)
			if out != tt.output || code != tt.code || started != tt.started {
				t.Errorf("parseConsole = %q, %d, %t; want %q, %d, %t", out, code, started, tt.output, tt.code, tt.started)
			}
		})
	}
}

func TestArgsAndEnvText(t *testing.T) {
	a, err := argsText([]string{"-test.run", "^Test(A|B)$", "with space"})
	if err != nil || a != "-test.run\n^Test(A|B)$\nwith space\n" {
		t.Errorf("argsText = %q, %v", a, err)
	}
	if _, err := argsText([]string{"two\nlines"}); err == nil {
		t.Error("argsText accepted an argument with a newline")
	}
	e, err := envText(map[string]string{"B": "it's", "A": "x y"})
	if err != nil || e != "export A='x y'\nexport B='it'\\''s'\n" {
		t.Errorf("envText = %q, %v", e, err)
	}
	if _, err := envText(map[string]string{"NOT-A-NAME": "x"}); err == nil {
		t.Error("envText accepted an invalid variable name")
	}
}

func TestNewestKernel(t *testing.T) {
	boot, mods := t.TempDir(), t.TempDir()
	for _, v := range []string{"6.1.0-9-amd64", "6.1.0-56-amd64", "6.12.0-1-amd64"} {
		os.WriteFile(filepath.Join(boot, "vmlinuz-"+v), nil, 0o644)
	}
	// 6.12 has no modules: not a candidate.
	for _, v := range []string{"6.1.0-9-amd64", "6.1.0-56-amd64"} {
		os.MkdirAll(filepath.Join(mods, v), 0o755)
		os.WriteFile(filepath.Join(mods, v, "modules.dep"), nil, 0o644)
	}
	got, err := newestKernel(boot, mods)
	if err != nil || got != "6.1.0-56-amd64" {
		t.Errorf("newestKernel = %q, %v; want 6.1.0-56-amd64", got, err)
	}
	if _, err := newestKernel(t.TempDir(), mods); !errors.Is(err, ErrUnavailable) {
		t.Errorf("no kernel: err = %v, want ErrUnavailable", err)
	}
}

func TestImageValidateAndJoin(t *testing.T) {
	im := Options{Modules: []string{"nbd", "dm-era"}, Tools: []string{"ip", "losetup"}}.image()
	if !slices.Contains(im.modules, "dm-era") || slices.Index(im.modules, "nbd") != slices.Index(DefaultModules, "nbd") {
		t.Errorf("modules = %v: want the defaults plus dm-era, without duplicates", im.modules)
	}
	if err := im.validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
	for _, bad := range []Options{{Modules: []string{"a b"}}, {Tools: []string{"$(reboot)"}}, {Files: []string{""}}} {
		if err := bad.image().validate(); err == nil {
			t.Errorf("validate accepted %+v", bad)
		}
	}
}

func TestLimitedBufferSeesSplitMarker(t *testing.T) {
	var started int
	b := limitedBuffer{limit: 64, onStart: func() { started++ }}
	b.Write([]byte("noise <<<strata-kernel"))
	b.Write([]byte("test start>>>\n"))
	b.Write([]byte(strings.Repeat("x", 100)))
	if started != 1 {
		t.Errorf("onStart called %d times, want 1", started)
	}
	if len(b.Bytes()) != 64 {
		t.Errorf("buffer holds %d bytes, want the limit 64", len(b.Bytes()))
	}
}

// TestBuildOnce: concurrent callers build a cache product once and all see
// it; a later call does not build again.
func TestBuildOnce(t *testing.T) {
	out := filepath.Join(t.TempDir(), "product")
	var builds atomic.Int32
	build := func(context.Context) error {
		builds.Add(1)
		time.Sleep(50 * time.Millisecond)
		return os.WriteFile(out, []byte("x"), 0o644)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := buildOnce(t.Context(), out, build); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := buildOnce(t.Context(), out, build); err != nil {
		t.Fatal(err)
	}
	if n := builds.Load(); n != 1 {
		t.Errorf("built %d times, want 1", n)
	}
}

func TestLockFileHonoursContext(t *testing.T) {
	p := filepath.Join(t.TempDir(), "l")
	l, err := lockFile(t.Context(), p)
	if err != nil {
		t.Fatal(err)
	}
	defer l.unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := lockFile(ctx, p); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second lock: err = %v, want DeadlineExceeded", err)
	}
}

// TestCacheKeys: the same inputs map to the same cache paths, other
// modules or tools to another base image, and a run leaves both cached
// so that the next one only packs the test binary.
func TestCacheKeys(t *testing.T) {
	h, err := New(".")
	if errors.Is(err, ErrUnavailable) {
		testenv.Missing(t, "kernel test guest", err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	h.cache = t.TempDir()
	k1, err1 := h.kernelPath()
	k2, err2 := h.kernelPath()
	if err1 != nil || err2 != nil || k1 != k2 || !strings.Contains(k1, h.KernelVersion()) {
		t.Errorf("kernelPath: %q %v, %q %v", k1, err1, k2, err2)
	}
	def, err := h.baseInputsFor(Options{}.image())
	if err != nil {
		t.Fatal(err)
	}
	again, _ := h.baseInputsFor(Options{}.image())
	more, _ := h.baseInputsFor(Options{Modules: []string{"dm-era"}}.image())
	tool, _ := h.baseInputsFor(Options{Tools: []string{"/bin/true"}}.image())
	if def.out != again.out {
		t.Errorf("same inputs, different base images: %s, %s", def.out, again.out)
	}
	if more.out == def.out || tool.out == def.out {
		t.Errorf("another module or tool must change the key: %s %s %s", def.out, more.out, tool.out)
	}
}

// skipRecorder is a TB that records Skipf and Fatalf instead of acting.
type skipRecorder struct {
	*testing.T
	skipped, fatal string
}

func (r *skipRecorder) Skipf(format string, args ...any)  { r.skipped = fmt.Sprintf(format, args...) }
func (r *skipRecorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }

// TestSkipsWithoutQemu: with no qemu in PATH the harness is unavailable
// and Run skips, naming what is missing; under STRATA_STRICT=1 it fails
// naming it instead.
func TestSkipsWithoutQemu(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := New("."); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), qemuBinary) {
		t.Fatalf("New without qemu: err = %v, want ErrUnavailable naming %s", err, qemuBinary)
	}
	for _, strict := range []string{"", "1"} {
		t.Setenv(testenv.StrictEnv, strict)
		rec := &skipRecorder{T: t}
		if res := Run(rec, "github.com/strata-infra/strata/internal/kerneltest/guestfeatures", "^TestTrivial$"); res != nil {
			t.Errorf("Run returned a result without qemu: %+v", res)
		}
		got, other := rec.skipped, rec.fatal
		if strict == "1" {
			got, other = rec.fatal, rec.skipped
		}
		if other != "" || !strings.Contains(got, qemuBinary) {
			t.Errorf("Run without qemu, %s=%q: skipped %q, fatal %q; want one naming %s", testenv.StrictEnv, strict, rec.skipped, rec.fatal, qemuBinary)
		}
	}
}

// TestTempDirPrunesStale: work directories that a killed run left in the
// cache are removed, fresh ones kept.
func TestTempDirPrunesStale(t *testing.T) {
	h := &Harness{cache: t.TempDir()}
	old, err := h.tempDir("run-")
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := h.tempDir("run-")
	if err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-3 * time.Hour)
	os.Chtimes(old, long, long)
	dir, err := h.tempDir("bin-")
	if err != nil {
		t.Fatal(err)
	}
	if fileExists(old) || !fileExists(fresh) || !fileExists(dir) {
		t.Errorf("after prune: stale %t (want false), fresh %t, new %t", fileExists(old), fileExists(fresh), fileExists(dir))
	}
}

// TestGuestEnvCarriesFactorAndStrict: the guest's test binary gets the
// host's STRATA_TIMEOUT_FACTOR and STRATA_STRICT, unless the run's own
// environment sets them.
func TestGuestEnvCarriesFactorAndStrict(t *testing.T) {
	t.Setenv(testenv.FactorEnv, "2.5")
	t.Setenv(testenv.StrictEnv, "1")
	got := guestEnv(map[string]string{"X": "y"})
	if got[testenv.FactorEnv] != "2.5" || got[testenv.StrictEnv] != "1" || got["X"] != "y" || len(got) != 3 {
		t.Errorf("guestEnv = %v", got)
	}
	if got := guestEnv(map[string]string{testenv.FactorEnv: "4"}); got[testenv.FactorEnv] != "4" {
		t.Errorf("the run's own factor was overridden: %v", got)
	}
}

func TestQemuArgsDrives(t *testing.T) {
	h := &Harness{}
	args := strings.Join(h.qemuArgs("vmlinux", "initrd", Options{Drives: []string{"/tmp/a.img", "/tmp/b,c.img"}}), " ")
	for _, want := range []string{
		"-drive file=/tmp/a.img,format=raw,if=virtio,cache=writethrough,id=d0",
		"-drive file=/tmp/b,,c.img,format=raw,if=virtio,cache=writethrough,id=d1",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("qemu args lack %q:\n%s", want, args)
		}
	}
	if strings.Contains(strings.Join(h.qemuArgs("vmlinux", "initrd", Options{}), " "), "-drive") {
		t.Error("a drive without Options.Drives")
	}
}
