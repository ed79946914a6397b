package guestfeatures

import (
	"bufio"
	"bytes"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/kerneltest"
	"github.com/strata-infra/strata/internal/testenv"
)

// SelftestEnv selects the harness's own failure tests: "fail" makes
// TestFailOnPurpose fail, "hang" makes TestHangOnPurpose hang.
const SelftestEnv = "STRATA_KERNELTEST_SELFTEST"

// requireGuest skips t unless it runs inside the kernel-test guest.
func requireGuest(t *testing.T) {
	t.Helper()
	if !kerneltest.InGuest() {
		t.Skipf("runs only inside the kernel-test guest (%s=1, set by its /init); the host runs it through kerneltest", kerneltest.GuestEnv)
	}
}

// run runs a command in the guest and returns its stdout; it fails t with
// the command's output when it exits non-zero.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
	case <-time.After(testenv.Scale(60 * time.Second)):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s %s: no exit after %s\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), testenv.Scale(60*time.Second), stdout.String(), stderr.String())
	}
	return stdout.String()
}

// seconds is d scaled by STRATA_TIMEOUT_FACTOR, in whole seconds, for a
// tool's --timeout option.
func seconds(d time.Duration) string {
	return strconv.Itoa(int(math.Ceil(testenv.Scale(d).Seconds())))
}

// modprobe loads modules and checks the kernel lists them.
func modprobe(t *testing.T, mod string, params ...string) {
	t.Helper()
	run(t, "modprobe", append([]string{mod}, params...)...)
	name := strings.ReplaceAll(mod, "-", "_")
	if _, err := os.Stat("/sys/module/" + name); err != nil {
		t.Fatalf("module %s loaded but /sys/module/%s is missing: %v", mod, name, err)
	}
}

// TestTrivial is the cheapest guest run: it proves the guest booted
// Debian's kernel and runs the test binary.
func TestTrivial(t *testing.T) {
	requireGuest(t)
	b, err := os.ReadFile("/proc/version")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest kernel: %s", strings.TrimSpace(string(b)))
	t.Logf("guest timeout factor: %g", testenv.Factor())
	if _, err := os.Stat("/etc/kerneltest-version"); err != nil {
		t.Fatalf("not the kerneltest initramfs: %v", err)
	}
}

// TestFailOnPurpose fails when the harness's self-test asks for it, to
// prove that a failing guest test fails the host's run.
func TestFailOnPurpose(t *testing.T) {
	requireGuest(t)
	if os.Getenv(SelftestEnv) != "fail" {
		t.Skipf("only when %s=fail", SelftestEnv)
	}
	t.Errorf("guest test failed on purpose: the marker the host looks for is 4c0ffee")
}

// TestHangOnPurpose never returns when the harness's self-test asks for
// it, to prove that the host kills a hung guest at its timeout.
func TestHangOnPurpose(t *testing.T) {
	requireGuest(t)
	if os.Getenv(SelftestEnv) != "hang" {
		t.Skipf("only when %s=hang", SelftestEnv)
	}
	t.Log("guest test hanging on purpose")
	os.Stdout.WriteString("guest test hanging on purpose\n")
	for {
		time.Sleep(time.Hour)
	}
}

// HostAddrEnv names the host:port (as the guest sees it, 10.0.2.2:P) of a
// TCP service the host test started on its loopback.
const HostAddrEnv = "STRATA_KERNELTEST_HOST_ADDR"

// TestReachHost connects to the host test's loopback service through the
// guest's user-mode NIC and echoes a line, the way a guest-side test
// reaches a Ceph monitor that the host test started.
func TestReachHost(t *testing.T) {
	requireGuest(t)
	addr := os.Getenv(HostAddrEnv)
	if addr == "" {
		t.Skipf("only when %s is set", HostAddrEnv)
	}
	c, err := net.DialTimeout("tcp", addr, testenv.Scale(10*time.Second))
	if err != nil {
		t.Fatalf("dial host service %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testenv.Scale(10 * time.Second)))
	if _, err := c.Write([]byte("hello from the guest\n")); err != nil {
		t.Fatal(err)
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read reply from %s: %v", addr, err)
	}
	t.Logf("host replied: %s", strings.TrimSpace(reply))
}
