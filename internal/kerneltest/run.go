package kerneltest

import (
	"context"
	"errors"
	"fmt"
	"github.com/strata-infra/strata/internal/testenv"
	"os"
	"strings"
	"time"
)

// TB is the part of testing.TB that Run uses; *testing.T satisfies it.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Context() context.Context
}

// Run runs the tests of pkg that match the -test.run pattern run inside a
// kernel-test guest, with the default options. See RunWith.
func Run(t TB, pkg, run string) *Result {
	t.Helper()
	return RunWith(t, pkg, run, Options{})
}

// RunWith runs the tests of pkg (an import path, or ./path from the module
// root) that match the -test.run pattern run inside a kernel-test guest.
// It skips t when the host has no qemu or no Debian kernel package, fails
// t with the guest's output when the guest's tests fail, time out or the
// guest dies, and otherwise logs the guest's output and returns the result.
func RunWith(t TB, pkg, run string, opts Options) *Result {
	t.Helper()
	if InGuest() {
		// A package that runs itself in the guest: the host-side test
		// matched the guest's -test.run too.
		t.Skipf("kerneltest: already inside the guest")
		return nil
	}
	h, err := newHarnessForTest(t)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			testenv.Missing(t, "kernel test guest", err.Error())
		} else {
			t.Fatalf("kerneltest: %v", err)
		}
		return nil
	}
	ctx := t.Context()
	if dl, ok := deadline(t); ok {
		// Leave the test framework time to report before its own
		// -timeout panic.
		margin := min(10*time.Second, time.Until(dl)/10)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-margin))
		defer cancel()
	}
	res, err := h.RunPackage(ctx, pkg, run, opts)
	if err != nil {
		t.Fatalf("%s", FailureMessage(h, pkg, run, res, err))
		return res
	}
	t.Logf("kerneltest: %s -test.run %q passed in guest (kernel %s, test started after %s, total %s):\n%s",
		pkg, run, h.KernelVersion(), res.Boot.Round(time.Millisecond), res.Total.Round(time.Millisecond), res.Output)
	return res
}

// RunPackage compiles the tests of pkg and runs those matching run in a
// guest, with -test.v and opts.Args. Its error wraps ErrTestFailed,
// ErrTimeout or ErrNoExitCode when the guest ran but the tests did not
// pass; the Result is then set too.
func (h *Harness) RunPackage(ctx context.Context, pkg, run string, opts Options) (*Result, error) {
	work, err := h.tempDir("bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	bin, err := h.BuildTest(ctx, pkg, work, opts)
	if err != nil {
		return nil, err
	}
	args := append([]string{"-test.v", "-test.run", run}, opts.Args...)
	return h.Exec(ctx, bin, args, opts)
}

// FailureMessage is how RunWith reports a failed guest run: the error and
// what the guest printed.
func FailureMessage(h *Harness, pkg, run string, res *Result, err error) string {
	if res == nil {
		return fmt.Sprintf("kerneltest: %s -test.run %q in guest: %v", pkg, run, err)
	}
	return fmt.Sprintf("kerneltest: %s -test.run %q in guest (kernel %s): %v\n--- guest output ---\n%s\n--- end of guest output ---",
		pkg, run, h.KernelVersion(), err, strings.TrimRight(guestText(res), "\n"))
}

// guestText is what to show of a failed run: the test's output, or the
// whole console when the test never started or reported nothing.
func guestText(r *Result) string {
	if r.Output != "" && r.ExitCode >= 0 {
		return r.Output
	}
	return r.Console
}

func newHarnessForTest(t TB) (*Harness, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	h, err := New(wd)
	if err != nil {
		return nil, err
	}
	h.Logf = t.Logf
	return h, nil
}

func deadline(t TB) (time.Time, bool) {
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		return d.Deadline()
	}
	return time.Time{}, false
}
