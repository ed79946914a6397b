package dhcp

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/strata-infra/strata/pkg/netnsutil"
)

// process is one running dnsmasq: started by this driver, or adopted by its
// pid file after an agent restart.
type process struct {
	pid    int
	exited chan struct{} // closed when a child of ours is reaped; nil when adopted
}

// cmdline returns the argv of pid, and whether pid is a live (not zombie)
// process.
func cmdline(pid int) ([]string, bool) {
	if dead(pid) {
		return nil, false
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(raw) == 0 {
		return nil, false
	}
	return strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00"), true
}

// ours reports whether argv is a dnsmasq using pidPath: a PID from a pid file
// may have been reused by anything.
func ours(argv []string, pidPath string) bool {
	return len(argv) > 0 && filepath.Base(argv[0]) == "dnsmasq" &&
		slices.Contains(argv, "--pid-file="+pidPath)
}

// adopt finds the running dnsmasq of dir by its pid file. It returns the
// process and its argv (without argv[0]), or nil when none of ours runs.
func adopt(dir string) (*process, []string) {
	pidPath := filepath.Join(dir, pidFile)
	b, err := os.ReadFile(pidPath)
	if err != nil {
		return nil, nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return nil, nil
	}
	argv, alive := cmdline(pid)
	if !alive || !ours(argv, pidPath) {
		return nil, nil
	}
	return &process{pid: pid}, argv[1:]
}

// alive reports whether p still runs.
func (p *process) alive(dir string) bool {
	if p.exited != nil {
		select {
		case <-p.exited:
			return false
		default:
		}
	}
	argv, ok := cmdline(p.pid)
	return ok && ours(argv, filepath.Join(dir, pidFile))
}

// start runs dnsmasq in namespace ns, in its own process group so that
// signals to the agent's group do not reach it, and waits until it has
// written its pid file.
func start(bin, ns, dir string, args []string) (*process, error) {
	_ = os.Remove(filepath.Join(dir, pidFile))
	errOut, err := os.OpenFile(filepath.Join(dir, stderrFile), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open dnsmasq stderr: %w", err)
	}
	defer errOut.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = errOut, errOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := netnsutil.Do(ns, cmd.Start); err != nil {
		return nil, fmt.Errorf("start dnsmasq in %q: %w", ns, err)
	}
	p := &process{pid: cmd.Process.Pid, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }() // reap our child
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if q, _ := adopt(dir); q != nil && q.pid == p.pid {
			return p, nil
		}
		select {
		case <-p.exited:
			msg, _ := os.ReadFile(filepath.Join(dir, stderrFile))
			return nil, fmt.Errorf("dnsmasq in %q exited at start: %s", ns, strings.TrimSpace(string(msg)))
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.stop(dir)
	return nil, fmt.Errorf("dnsmasq in %q wrote no pid file within 5s", ns)
}

// stop ends p: SIGTERM, then SIGKILL after 2 s. Only a process that is still
// our dnsmasq is signalled.
func (p *process) stop(dir string) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if !p.alive(dir) {
			break
		}
		_ = syscall.Kill(p.pid, sig)
		if p.waitGone() {
			break
		}
	}
	_ = os.Remove(filepath.Join(dir, pidFile))
}

// gone says whether p has finished dying: reaped, or a zombie. alive is
// not enough while it dies: an adopted process's command line reads empty
// once its memory is gone, before its files, its listening sockets among
// them, are closed, and a new dnsmasq started then cannot bind.
func (p *process) gone() bool {
	if p.exited != nil {
		select {
		case <-p.exited:
			return true
		default:
			return false
		}
	}
	return dead(p.pid)
}

// dead says whether pid is gone or a zombie: no longer running, its files
// closed.
func dead(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X'
}

// waitGone waits up to 2 s for p to be gone, and says whether it is.
func (p *process) waitGone() bool {
	for range 100 {
		if p.gone() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p.gone()
}

// hup makes dnsmasq reread its hosts, addn-hosts and opts files.
func (p *process) hup(dir string) error {
	if !p.alive(dir) {
		return errors.New("dnsmasq is not running")
	}
	return syscall.Kill(p.pid, syscall.SIGHUP)
}
