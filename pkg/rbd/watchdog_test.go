package rbd_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/cephtest"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/rbd"
)

// wname is a per-run image name for the watchdog tests: prefix, pid, counter.
func wname(kind string) string {
	return fmt.Sprintf("s8a-%d-%d-%s", os.Getpid(), counter.Add(1), kind)
}

// stopHelper wedges the connection's running helper with SIGSTOP and
// returns its PID.
func stopHelper(t *testing.T, c *rbd.Conn) int {
	t.Helper()
	pid := c.HelperPID()
	if pid <= 0 || pid == os.Getpid() {
		t.Fatalf("helper pid %d: want a child process", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	return pid
}

// wantWedged checks that err is op's failure on the helper pid that the
// watchdog killed under bound.
func wantWedged(t *testing.T, err error, op string, bound time.Duration, pid int) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s on a wedged helper succeeded", op)
	}
	msg := err.Error()
	for _, want := range []string{"ceph " + op + ":", "(pid " + strconv.Itoa(pid) + ")", "wedged, killed", "no answer within " + bound.String(), "the next call starts a new one"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("%s on a wedged helper: %q does not say %q", op, msg, want)
		}
	}
}

// wantReaped waits for pid to be gone: a zombie still answers signal 0,
// a reaped process does not.
func wantReaped(t *testing.T, pid int) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("killed helper %d reaped", pid), func() error {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill -0 %d: %v", pid, err)
		}
		return nil
	})
}

// wantNewHelper checks that the next call runs, in a helper other than old.
func wantNewHelper(t *testing.T, c *rbd.Conn, old int) int {
	t.Helper()
	if _, err := c.List("images"); err != nil {
		t.Fatalf("List after the wedged helper was killed: %v", err)
	}
	pid := c.HelperPID()
	if pid <= 0 || pid == old {
		t.Fatalf("helper pid %d after the kill (was %d): want a new process", pid, old)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("new helper %d: kill -0: %v", pid, err)
	}
	return pid
}

// TestWedgedHelperIsKilled: a helper that does not answer a short call
// within the bound (here stopped with SIGSTOP, as a deadlock or a stuck
// syscall would leave it) is killed and reaped; the call fails naming the
// operation, the bound and the PID; calls waiting on it at the same time
// all fail the same way; the next call runs in a new helper.
func TestWedgedHelperIsKilled(t *testing.T) {
	c, _ := connect(t)
	if _, err := c.List("images"); err != nil {
		t.Fatal(err)
	}
	absent := rbd.Ref{Pool: "images", Image: wname("absent")}

	bound := testenv.Scale(2 * time.Second)
	pid := stopHelper(t, c)
	c.SetCallBound(bound)
	_, err := c.Status(absent)
	c.SetCallBound(0) // the new helper connects under the real bound
	wantWedged(t, err, "Status", bound, pid)
	t.Logf("the call into the stopped helper: %v", err)
	wantReaped(t, pid)
	pid = wantNewHelper(t, c, pid)

	// Three calls wait on one stopped helper: the first bound to lapse
	// kills it and all three fail, each naming itself. The bound is long
	// enough that all three are sent before it lapses, however loaded the
	// machine.
	bound = testenv.Scale(5 * time.Second)
	pid = stopHelper(t, c)
	c.SetCallBound(bound)
	ops := []string{"Status", "Holders", "List"}
	errs := make([]error, len(ops))
	var wg sync.WaitGroup
	for i, op := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch op {
			case "Status":
				_, errs[i] = c.Status(absent)
			case "Holders":
				_, _, errs[i] = c.Holders(absent)
			case "List":
				_, errs[i] = c.List("images")
			}
		}()
	}
	wg.Wait()
	c.SetCallBound(0)
	for i, op := range ops {
		wantWedged(t, errs[i], op, bound, pid)
	}
	wantReaped(t, pid)
	again := wantNewHelper(t, c, pid)
	if _, err := c.Status(absent); !errors.Is(err, rbd.ErrNotFound) {
		t.Fatalf("Status of a missing image through the new helper: %v; want ErrNotFound", err)
	}
	if c.HelperPID() != again {
		t.Fatalf("helper changed from %d to %d without a fault", again, c.HelperPID())
	}
}

// TestLongCallIsWatchedNotBounded: a Copy is not bound by the short bound
// (it runs as long as its data), only watched: it outlasts the bound on a
// live helper (the OSD is stopped meanwhile, so it cannot finish sooner)
// and succeeds in the same helper; one that stops answering pings is
// killed like a short call's, and so is an import whose progress polls go
// unanswered.
func TestLongCallIsWatchedNotBounded(t *testing.T) {
	c, cl := connect(t)
	src := rbd.Ref{Pool: "volumes", Image: wname("src")}
	dst := rbd.Ref{Pool: "volumes", Image: wname("dst")}
	dst2 := rbd.Ref{Pool: "volumes", Image: wname("dst2")}
	t.Cleanup(func() {
		c.SetCallBound(0)
		for _, r := range []rbd.Ref{dst2, dst, src} {
			c.Remove(r, "", true)
		}
	})
	if err := c.Create(src, 8*mib, "t"); err != nil {
		t.Fatal(err)
	}
	pid := c.HelperPID()

	raw, err := os.ReadFile(cephtest.PIDFile(cl.Dir, "osd.0"))
	if err != nil {
		t.Fatal(err)
	}
	osd, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || osd <= 0 {
		t.Fatalf("osd.0 pid file: %q", raw)
	}
	bound := testenv.Scale(2 * time.Second)
	c.SetCallBound(bound)
	if err := syscall.Kill(osd, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			syscall.Kill(osd, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	done := make(chan error, 1)
	go func() { done <- c.Copy(src, dst, "t") }()
	// Not a timed assertion: the OSD stays stopped for three bounds, so the
	// Copy runs at least that long whatever the machine's speed.
	time.Sleep(3 * bound)
	resume()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Copy that outlasted the short bound (%v) on a live helper: %v", bound, err)
		}
	case <-time.After(testenv.Scale(3 * time.Minute)):
		t.Fatal("Copy did not return after the OSD resumed")
	}
	if got := c.HelperPID(); got != pid {
		t.Fatalf("helper %d was replaced by %d during a long call", pid, got)
	}
	if st := mustStatus(t, c, dst); st.Size != 8*mib {
		t.Fatalf("copy: %+v", st)
	}

	// A stopped helper answers no ping: the long call fails like a short one.
	pid = stopHelper(t, c)
	err = c.Copy(src, dst2, "t")
	c.SetCallBound(0)
	wantWedged(t, err, "Copy", bound, pid)
	if !strings.Contains(err.Error(), "a ping during Copy") {
		t.Fatalf("Copy on a stopped helper: %v; want the ping named", err)
	}
	t.Logf("the long call into the stopped helper: %v", err)
	wantReaped(t, pid)
	pid = wantNewHelper(t, c, pid)

	// An import is watched by its progress polls: a stopped helper answers
	// none, and the import fails the same way.
	file := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(file, make([]byte, mib), 0o644); err != nil {
		t.Fatal(err)
	}
	img := rbd.Ref{Pool: "images", Image: wname("img")}
	t.Cleanup(func() { c.Remove(img, "", true) })
	pid = stopHelper(t, c)
	c.SetCallBound(bound)
	_, err = c.ImportFile(context.Background(), file, "raw", img, "t", t.TempDir(), nil)
	c.SetCallBound(0)
	wantWedged(t, err, "Import", bound, pid)
	if !strings.Contains(err.Error(), "a progress poll during Import") {
		t.Fatalf("Import on a stopped helper: %v; want the poll named", err)
	}
	wantReaped(t, pid)
	wantNewHelper(t, c, pid)
}
