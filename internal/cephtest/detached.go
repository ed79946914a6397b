package cephtest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/strata-infra/strata/pkg/pidfile"
)

// RunningIn reports whether every daemon of the cluster in dir is running
// (a detached cluster started earlier, say by an earlier make lab).
func RunningIn(dir string) bool {
	for _, n := range daemonOrder {
		if !pidfile.Alive(PIDFile(dir, n)) {
			return false
		}
	}
	return true
}

// StopDir stops the daemons of the cluster in dir by their pid files, OSD
// then manager then monitor: SIGTERM, SIGKILL after 15 s. Daemons that do
// not run are fine. The directory is the caller's to remove.
func StopDir(dir string) error {
	var errs []string
	for _, n := range daemonOrder {
		path := PIDFile(dir, n)
		if !pidfile.Alive(path) {
			continue
		}
		b, _ := os.ReadFile(path)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			errs = append(errs, fmt.Sprintf("stop %s (pid %d): %v", n, pid, err))
			continue
		}
		deadline := time.Now().Add(15 * time.Second)
		for pidfile.Alive(path) {
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL)
				deadline = time.Now().Add(5 * time.Second)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("stop ceph in %s: %s", dir, strings.Join(errs, "; "))
	}
	return nil
}
