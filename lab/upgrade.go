package lab

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// UpgradeAgent is the lab's "install the new package" for host i: it
// copies bin to the host's own binary path, stops the agent with SIGTERM
// (which leaves the data plane as it is) and starts it again with the
// same arguments on the new binary. A bin that cannot be read fails before
// anything is stopped.
func (l *Lab) UpgradeAgent(i int, bin string) error {
	if i < 1 || i > l.Hosts {
		return fmt.Errorf("lab host %d: want 1..%d", i, l.Hosts)
	}
	dst := filepath.Join(l.Dir, "upgrade", l.HostName(i), "strata-agent")
	if err := copyExecutable(bin, dst); err != nil {
		return fmt.Errorf("upgrade %s: %w", l.HostName(i), err)
	}
	if err := l.StopAgent(i, syscall.SIGTERM); err != nil {
		return err
	}
	argv := l.AgentArgs(i)
	for k, a := range argv {
		if a == l.bin("strata-agent") {
			argv[k] = dst
		}
	}
	_, err := l.start(l.agentProc(i), argv)
	return err
}

// copyExecutable writes src to dst atomically (a temp file renamed over
// it), so a running copy of dst is never overwritten in place.
func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".strata-agent-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
