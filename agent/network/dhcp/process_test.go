package dhcp

import (
	"os/exec"
	"syscall"
	"testing"
)

// TestGoneWaitsForTheZombie: an adopted process (not our child, so not
// reaped by us) counts as gone only once it is a zombie, when its files
// are closed, not while it still runs; a stopped one killed is gone too.
func TestGoneWaitsForTheZombie(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	p := &process{pid: cmd.Process.Pid} // as adopted: no exited channel
	if p.gone() {
		t.Fatal("a running process counts as gone")
	}
	if err := syscall.Kill(p.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if p.gone() {
		t.Fatal("a stopped process counts as gone")
	}
	if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Not reaped (cmd.Wait only at the end): it stays a zombie.
	if !p.waitGone() {
		t.Fatal("a killed process never counted as gone")
	}
}
