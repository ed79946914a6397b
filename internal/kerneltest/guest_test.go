package kerneltest_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/kerneltest"
	"github.com/strata-infra/strata/internal/testenv"
)

const guestPkg = "github.com/strata-infra/strata/internal/kerneltest/guestfeatures"

// TestTrivialGuest boots the guest and runs one trivial test: the cost
// every package that uses the harness pays.
func TestTrivialGuest(t *testing.T) {
	start := time.Now()
	res := kerneltest.Run(t, guestPkg, "^TestTrivial$")
	if !strings.Contains(res.Output, "--- PASS: TestTrivial") {
		t.Fatalf("guest output lacks the trivial test's pass line:\n%s", res.Output)
	}
	// The guest's waits scale as the host's do.
	if want := fmt.Sprintf("guest timeout factor: %g\n", testenv.Factor()); !strings.Contains(res.Output, want) {
		t.Errorf("guest output lacks %q:\n%s", want, res.Output)
	}
	t.Logf("boot to test start %s, qemu total %s, with compile and pack %s",
		res.Boot.Round(time.Millisecond), res.Total.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	// How long that takes is a figure for a benchmark, not a verdict here:
	// under load a correct guest is only slower.
}

// TestKernelFeaturesInGuest loads openvswitch, ip_gre, dm-writecache,
// dm-cache, rbd, nf_tables and nbd inside the guest and proves each works
// with the distribution's tools (not Strata's drivers): ovs-vswitchd with a
// GRE port on the kernel datapath that carries a ping, gretap carrying a
// ping, dm caches flushed and read back; rbd and nbd are only loaded (see
// guestfeatures.TestFeatures).
func TestKernelFeaturesInGuest(t *testing.T) {
	// Eight features, ovs-vswitchd's start and a tunnel ping among them:
	// a bound for a hung guest, not a performance target.
	res := kerneltest.RunWith(t, guestPkg, "^TestFeatures$", kerneltest.Options{Timeout: testenv.Scale(8 * time.Minute)})
	for _, sub := range []string{"openvswitch", "gretap", "dm-writecache", "dm-cache", "rbd", "ovs-vswitchd", "nf_tables", "nbd"} {
		if !strings.Contains(res.Output, "--- PASS: TestFeatures/"+sub) {
			t.Errorf("guest output lacks the pass line of %s:\n%s", sub, res.Output)
		}
	}
}

// TestStrataDriverInGuest runs a Strata driver's own test inside the
// guest: the router's nftables sync (google/nftables over netlink, one
// batch per change) repairs an out-of-band change to its table on Debian's
// kernel, in a namespace the test makes there. A skip inside the guest
// (a missing part) shows no pass line and fails this test.
func TestStrataDriverInGuest(t *testing.T) {
	const pkg, test = "github.com/strata-infra/strata/agent/network/nftsync", "TestOutOfBandChangeRepaired"
	res := kerneltest.Run(t, pkg, "^"+test+"$")
	if !strings.Contains(res.Output, "--- PASS: "+test) {
		t.Errorf("guest output lacks the pass line of %s:\n%s", test, res.Output)
	}
}

// harness returns a Harness for the tests that assert on a failing guest
// run, skipping where the host has no qemu or kernel package.
func harness(t *testing.T) *kerneltest.Harness {
	t.Helper()
	h, err := kerneltest.New(".")
	if errors.Is(err, kerneltest.ErrUnavailable) {
		testenv.Missing(t, "kernel test guest", err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	h.Logf = t.Logf
	return h
}

// recordingTB stands in for *testing.T so that RunWith's failure can be
// asserted on without failing this test.
type recordingTB struct {
	*testing.T
	fatal string
}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// TestGuestFailureFailsHost: a test failing inside the guest makes the
// runner return ErrTestFailed with the guest's output, and fails the host
// test that called Run with that output in its message.
func TestGuestFailureFailsHost(t *testing.T) {
	opts := kerneltest.Options{Env: map[string]string{"STRATA_KERNELTEST_SELFTEST": "fail"}}
	res, err := harness(t).RunPackage(t.Context(), guestPkg, "^TestFailOnPurpose$", opts)
	if !errors.Is(err, kerneltest.ErrTestFailed) {
		t.Fatalf("want ErrTestFailed, got %v (result %+v)", err, res)
	}
	if res.ExitCode != 1 || !strings.Contains(res.Output, "--- FAIL: TestFailOnPurpose") ||
		!strings.Contains(res.Output, "the marker the host looks for is 4c0ffee") {
		t.Fatalf("want exit code 1 and the failure in the output, got %d:\n%s", res.ExitCode, res.Output)
	}

	// The same through Run, with a TB that records instead of failing.
	rec := &recordingTB{T: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		kerneltest.RunWith(rec, guestPkg, "^TestFailOnPurpose$", opts)
	}()
	<-done
	if rec.fatal == "" {
		t.Fatal("a failing guest test did not fail the host test that called RunWith")
	}
	for _, want := range []string{
		"exit code 1",
		"--- guest output ---",
		"--- FAIL: TestFailOnPurpose",
		"the marker the host looks for is 4c0ffee",
	} {
		if !strings.Contains(rec.fatal, want) {
			t.Errorf("host failure message lacks %q:\n%s", want, rec.fatal)
		}
	}
	t.Logf("the host test would have failed with:\n%s", rec.fatal)
}

// TestHungGuestIsKilled: a guest whose test never returns is killed at the
// timeout, and the runner says so. The timeout leaves room for a slow TCG
// boot (4-13 s measured), so the guest's test has really started and hung.
func TestHungGuestIsKilled(t *testing.T) {
	timeout := testenv.Scale(40 * time.Second)
	res, err := harness(t).RunPackage(t.Context(), guestPkg, "^TestHangOnPurpose$", kerneltest.Options{
		Env:     map[string]string{"STRATA_KERNELTEST_SELFTEST": "hang"},
		Timeout: timeout,
	})
	if !errors.Is(err, kerneltest.ErrTimeout) || res == nil || !res.TimedOut {
		t.Fatalf("want ErrTimeout and a timed-out result, got %v (result %+v)", err, res)
	}
	if res.Total < timeout || res.Total > timeout+testenv.Scale(10*time.Second) {
		t.Errorf("guest ran %s; want it killed at %s", res.Total, timeout)
	}
	if !strings.Contains(res.Output, "hanging on purpose") {
		t.Errorf("the guest was killed before its test started hanging (slow boot? raise %s):\n%s", testenv.FactorEnv, res.Console)
	}
	if err := syscall.Kill(res.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("qemu pid %d still exists after the runner returned (kill -0: %v)", res.PID, err)
	}
	t.Logf("hung guest killed after %s: %v", res.Total.Round(time.Millisecond), err)
}

// TestCachedRunOnlyPacksTest: once the kernel and the base initramfs are
// cached, a run builds neither again.
func TestCachedRunOnlyPacksTest(t *testing.T) {
	h := harness(t)
	var mu sync.Mutex
	var lines []string
	h.Logf = func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(format, args...))
		t.Logf(format, args...)
	}
	for i := range 2 {
		mu.Lock()
		lines = nil
		mu.Unlock()
		if _, err := h.RunPackage(t.Context(), guestPkg, "^TestTrivial$", kerneltest.Options{}); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	for _, l := range lines {
		if strings.Contains(l, "extracted vmlinux") || strings.Contains(l, "built base initramfs") {
			t.Errorf("the second run rebuilt a cached product: %s", l)
		}
	}
}

// TestGuestReachesHostLoopback: a guest test reaches a TCP service that
// the host test listens with on 127.0.0.1, at 10.0.2.2 through qemu's
// user-mode network.
func TestGuestReachesHostLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testenv.Scale(30 * time.Second)))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Write([]byte("hello from the host\n"))
		got <- line
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	res := kerneltest.RunWith(t, guestPkg, "^TestReachHost$", kerneltest.Options{
		Env: map[string]string{"STRATA_KERNELTEST_HOST_ADDR": fmt.Sprintf("10.0.2.2:%d", port)},
	})
	if !strings.Contains(res.Output, "host replied: hello from the host") {
		t.Errorf("guest did not get the host's reply:\n%s", res.Output)
	}
	select {
	case line := <-got:
		if line != "hello from the guest\n" {
			t.Errorf("host service read %q", line)
		}
	case <-time.After(testenv.Scale(5 * time.Second)):
		t.Error("the host service saw no connection from the guest")
	}
}

// BenchmarkGuestBoot is what TestTrivialGuest used to hold as a budget:
// the TCG guest's boot to its test's start, and boot plus a trivial test.
func BenchmarkGuestBoot(b *testing.B) {
	var boot, total time.Duration
	for range b.N {
		res := kerneltest.Run(b, guestPkg, "^TestTrivial$")
		boot += res.Boot
		total += res.Total
	}
	b.ReportMetric(boot.Seconds()/float64(b.N), "boot-s/op")
	b.ReportMetric(total.Seconds()/float64(b.N), "total-s/op")
}
