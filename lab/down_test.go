package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
)

// startDecoy runs a process named like a qemu (a copy of sleep called
// qemu-system-x86_64) that no lab libvirtd started, stopped at cleanup.
func startDecoy(t *testing.T) int {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "qemu-system-x86_64")
	src, err := os.Open(sleep)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	cmd := exec.Command(bin, "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

// writePIDFile writes pid into <dir>/run/qemu/<domain>.pid, where a lab
// libvirtd keeps its guests' pid files.
func writePIDFile(t *testing.T, dir, domain string, pid int) string {
	t.Helper()
	f := filepath.Join(dir, "run", "qemu", domain+".pid")
	if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, []byte(fmt.Sprintf("%d\n", pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestQemuOfTrustsOnlyTheLibvirtdsOwn: a pid file in a libvirtd's layout
// does not make its process a guest of that libvirtd: not a process that
// is no qemu, and not a qemu outside that libvirtd's mount namespace.
func TestQemuOfTrustsOnlyTheLibvirtdsOwn(t *testing.T) {
	dir := t.TempDir()
	decoy := startDecoy(t)
	if pid := qemuOf(writePIDFile(t, dir, "decoy", decoy)); pid != 0 {
		t.Fatalf("qemuOf trusts pid %d, a qemu outside the libvirtd's namespace", pid)
	}
	if pid := qemuOf(writePIDFile(t, dir, "self", os.Getpid())); pid != 0 {
		t.Fatalf("qemuOf trusts pid %d, not a qemu", pid)
	}
	if pid := qemuOf(filepath.Join(dir, "run", "qemu", "none.pid")); pid != 0 {
		t.Fatalf("qemuOf of a missing pid file: %d", pid)
	}
}

// startTime is field 22 of /proc/<pid>/stat, "" when pid is gone: with
// the pid it names one process, whatever reuses the pid later.
func startTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// TestLabDownStopsGuests is make lab-down after make lab's demo: two
// hosts on Ceph, each with a libvirtd where make lab puts it (under the
// lab's directory), the storage demo's instance booted from an RBD clone
// with a volume hot-plugged, and a second RBD-booted instance on the
// other host, whose libvirtd then dies (SIGKILL: its qemu lives on, as
// after a libvirtd crash). A decoy qemu that is not the lab's has a pid
// file among the lab's. Down must end both guests' qemus (the first
// through its libvirtd, the second by pid), leave the decoy running, and
// remove the lab's directory.
func TestLabDownStopsGuests(t *testing.T) {
	cl := newCephLabLV(t, 2, true)
	ctx := context.Background()
	start := time.Now()
	var out strings.Builder
	err := cl.DemoStorage(ctx, &out, cl.guest.Image)
	t.Logf("the storage demo (%s):\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatal(err)
	}
	r, err := cl.resource(t, "instances", demoVM)
	if err != nil {
		t.Fatal(err)
	}
	var s api.InstanceSpec
	json.Unmarshal(r.Spec, &s)
	here, other := 1, 2
	if s.Host == "h2" {
		here, other = 2, 1
	}
	stratactl(t, cl.Lab, nil, "instances", "create", "-p", demoProject, "vm2", "--flavor", "tiny", "--image", DemoRBDImage,
		"--host", cl.HostName(other))
	cl.waitResource(t, "instances", "vm2", "running", 120*time.Second)

	guests := cl.Guests()
	byHost := map[int]GuestQemu{}
	for _, g := range guests {
		for i, lv := range cl.lvs {
			if strings.HasPrefix(g.PIDFile, lv.Dir+"/") {
				if pid, err := lv.QemuPID(g.Domain); err != nil || pid != g.PID {
					t.Fatalf("guest %+v: libvirtd of h%d has pid %d (%v) for it", g, i, pid, err)
				}
				byHost[i] = g
			}
		}
	}
	if len(guests) != 2 || len(byHost) != 2 {
		t.Fatalf("the lab's guests: %+v; want one qemu under each host's libvirtd", guests)
	}
	started := map[int]string{}
	for _, g := range guests {
		started[g.PID] = startTime(g.PID)
	}
	// Should Down leave one (the test fails), it goes here: the
	// libvirtds' own cleanup finds no pid files once the lab's dir is gone.
	t.Cleanup(func() {
		for pid, st := range started {
			if startTime(pid) == st {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	t.Logf("guest qemus: %s (pid %d) under h%d's libvirtd, %s (pid %d) under h%d's",
		byHost[here].Domain, byHost[here].PID, here, byHost[other].Domain, byHost[other].PID, other)

	dead := cl.lvs[other]
	syscall.Kill(dead.PID(), syscall.SIGKILL)
	testenv.WaitTrue(t, 30*time.Second, fmt.Sprintf("h%d's libvirtd to die", other), func() bool {
		return gone(dead.PID())
	})
	if gone(byHost[other].PID) {
		t.Fatalf("h%d's guest died with its libvirtd; the test wants it orphaned", other)
	}
	decoy := startDecoy(t)
	writePIDFile(t, cl.lvs[here].Dir, "strata-decoy", decoy)
	libvirtds := []int{cl.lvs[here].PID()}

	start = time.Now()
	if err := cl.Down(); err != nil {
		t.Fatalf("lab down: %v", err)
	}
	t.Logf("lab down in %s", time.Since(start).Round(time.Millisecond))
	for pid, st := range started {
		if startTime(pid) == st && !gone(pid) {
			t.Errorf("guest qemu pid %d still runs after Down", pid)
		}
	}
	for _, pid := range libvirtds {
		if !gone(pid) {
			t.Errorf("libvirtd pid %d still runs after Down", pid)
		}
	}
	if gone(decoy) {
		t.Error("Down killed a qemu that is not the lab's")
	}
	if _, err := os.Stat(cl.Dir); !os.IsNotExist(err) {
		t.Errorf("lab dir %s after Down: %v", cl.Dir, err)
	}
}
