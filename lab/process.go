package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one process the lab starts, tracked by its pid file.
type proc struct {
	name string // coordinator, h1...
	bin  string // the binary, to check a pid really is ours
}

func (l *Lab) pidFile(name string) string { return filepath.Join(l.Dir, "run", name+".pid") }
func (l *Lab) logFile(name string) string { return filepath.Join(l.Dir, "logs", name+".log") }

// running returns the pid of a live process of ours, or 0. A stale pid
// file, or a pid reused by another program, counts as not running.
func (l *Lab) running(p proc) int {
	b, err := os.ReadFile(l.pidFile(p.name))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// A zombie is dead for our purposes once its other threads are gone
	// too: a killed leader turns Z while they may still finish a syscall.
	if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 && f[0] == "Z" {
		if tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); err != nil || len(tasks) <= 1 {
			return 0
		}
	}
	// A process that is exiting has released its memory, so its cmdline
	// reads empty while its last threads may still finish a syscall (a
	// rename of a state file, say): that is still running. Only a
	// non-empty cmdline naming another program means the pid was reused.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0
	}
	if len(cmdline) > 0 && !bytes.Contains(cmdline, []byte(filepath.Base(p.bin))) {
		return 0
	}
	return pid
}

// start runs argv detached (own session, log file) unless already running.
func (l *Lab) start(p proc, argv []string) (int, error) {
	if pid := l.running(p); pid != 0 {
		return pid, nil
	}
	for _, d := range []string{filepath.Dir(l.pidFile(p.name)), filepath.Dir(l.logFile(p.name))} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return 0, err
		}
	}
	logf, err := os.OpenFile(l.logFile(p.name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if l.Env != nil {
		cmd.Env = append(os.Environ(), l.Env(p.name)...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", p.name, err)
	}
	pid := cmd.Process.Pid
	// Reap it in the background so a killed child does not linger as a
	// zombie while this process (a test) lives on.
	go func() { _ = cmd.Wait() }()
	if err := os.WriteFile(l.pidFile(p.name), []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		return 0, err
	}
	return pid, nil
}

// stop signals a process of ours and waits for it to go; SIGTERM escalates
// to SIGKILL after 10 s. Not running is fine.
func (l *Lab) stop(p proc, sig syscall.Signal) error {
	pid := l.running(p)
	if pid == 0 {
		_ = os.Remove(l.pidFile(p.name))
		return nil
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s (pid %d): %w", p.name, pid, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for l.running(p) != 0 {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			deadline = time.Now().Add(5 * time.Second)
			sig = syscall.SIGKILL
		}
		time.Sleep(50 * time.Millisecond)
	}
	return os.Remove(l.pidFile(p.name))
}
