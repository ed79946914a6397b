// Package virttest runs a private libvirtd for the compute driver's root
// tests. The daemon runs in a mount namespace of its own in which
// /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/log/libvirt and
// /var/cache/libvirt are the test's directories, so it neither sees nor
// touches the host's libvirt, and in the network namespace the test names
// (a lab host), so that the taps it makes land next to that host's bridges.
// It listens on a socket in the test's directory and is started and stopped
// by PID.
package virttest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/netnsutil"
)

// Daemon is one private libvirtd.
type Daemon struct {
	Dir    string // everything of it lives here
	Socket string // its read-write unix socket
	NetNS  string // the namespace it runs in ("" the caller's)
	// Env is added to the daemon's environment: OVS_RUNDIR names the
	// Open vSwitch whose ovs-vsctl libvirt runs for
	// <virtualport type='openvswitch'> (libvirt passes no --db).
	Env    []string
	cmd    *exec.Cmd
	exited chan struct{}
}

// Available names the part that keeps libvirtd or qemu from running here
// and why, or returns "" when they can.
func Available() (part, reason string) {
	if os.Geteuid() != 0 {
		return "root", "needs root: runs libvirtd, creates namespaces and bridges"
	}
	for _, b := range []string{"libvirtd", "qemu-system-x86_64", "qemu-img"} {
		if _, err := lookPath(b); err != nil {
			return b, "not installed (bash agent/compute/testdeps.sh)"
		}
	}
	return "", ""
}

// Require ends t (a skip, or a failure under STRATA_STRICT=1) when
// libvirtd or qemu cannot run here.
func Require(t testenv.TB) {
	t.Helper()
	if part, reason := Available(); part != "" {
		testenv.Missing(t, part, reason)
	}
}

func lookPath(b string) (string, error) {
	if p, err := exec.LookPath(b); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(d, b)); err == nil {
			return filepath.Join(d, b), nil
		}
	}
	return "", fmt.Errorf("%s not found", b)
}

var mounts = []struct{ sub, target string }{
	{"etc", "/etc/libvirt"}, {"run", "/run/libvirt"}, {"lib", "/var/lib/libvirt"},
	{"log", "/var/log/libvirt"}, {"cache", "/var/cache/libvirt"},
}

// New writes the daemon's configuration under dir; Start runs it.
func New(dir, netns string) (*Daemon, error) {
	d := &Daemon{Dir: dir, Socket: filepath.Join(dir, "sock", "libvirt-sock"), NetNS: netns}
	for _, m := range mounts {
		if err := os.MkdirAll(filepath.Join(dir, m.sub), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "sock"), 0o700); err != nil {
		return nil, err
	}
	// A host UUID of its own: libvirtds on one machine would otherwise
	// share the machine's, and libvirt refuses a migration between them
	// as one to the same host.
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return nil, err
	}
	u[6], u[8] = u[6]&0x0f|0x40, u[8]&0x3f|0x80
	libvirtd := fmt.Sprintf(`unix_sock_dir = %q
unix_sock_group = "root"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:%s"
host_uuid = "%x-%x-%x-%x-%x"
`, filepath.Join(dir, "sock"), filepath.Join(dir, "libvirtd.log"), u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
	// No virtlogd without systemd: qemu writes its stdio to a file. No
	// security driver and no per-domain mount namespace: the test guest's
	// files are plain root-owned files in the test's directory.
	qemu := `stdio_handler = "file"
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = []
`
	for name, s := range map[string]string{"libvirtd.conf": libvirtd, "qemu.conf": qemu} {
		if err := os.WriteFile(filepath.Join(dir, "etc", name), []byte(s), 0o644); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// wrapper is the shell that makes the private mounts and becomes libvirtd.
// sysfs is mounted again so that /sys/class/net shows the network namespace
// libvirtd runs in (libvirt reads bridge attributes there).
func (d *Daemon) wrapper(libvirtd string) string {
	var b strings.Builder
	b.WriteString("set -e\nmount --make-rprivate /\n")
	if d.NetNS != "" {
		b.WriteString("umount -l /sys\nmount -t sysfs sysfs /sys\n")
	}
	for _, m := range mounts {
		fmt.Fprintf(&b, "mkdir -p %s\nmount --bind %s %s\n", m.target, filepath.Join(d.Dir, m.sub), m.target)
	}
	// Its own pid file: the default, /run/libvirtd.pid, is one per machine
	// and a second daemon (another test package, a system libvirtd) would
	// refuse to start.
	fmt.Fprintf(&b, "exec %s --config %s --pid-file %s\n", libvirtd, filepath.Join(d.Dir, "etc", "libvirtd.conf"), filepath.Join(d.Dir, "libvirtd.pid"))
	return b.String()
}

// Start runs libvirtd and waits until its socket accepts connections.
func (d *Daemon) Start() error {
	libvirtd, err := lookPath("libvirtd")
	if err != nil {
		return err
	}
	os.Remove(d.Socket)
	out, err := os.OpenFile(filepath.Join(d.Dir, "libvirtd.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command("sh", "-c", d.wrapper(libvirtd))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), d.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Setpgid: true}
	if err := netnsutil.Do(d.NetNS, cmd.Start); err != nil {
		return fmt.Errorf("start libvirtd in %q: %w", d.Dir, err)
	}
	d.cmd, d.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		// The socket file appears at bind(), before listen(): only a
		// connection that goes through says libvirtd is ready.
		if c, err := net.Dial("unix", d.Socket); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-d.exited:
			b, _ := os.ReadFile(filepath.Join(d.Dir, "libvirtd.out"))
			return fmt.Errorf("libvirtd in %q exited: %s", d.Dir, b)
		case <-time.After(20 * time.Millisecond):
		}
	}
	d.Stop()
	return fmt.Errorf("libvirtd in %q: no socket after 15 s", d.Dir)
}

// PID is the daemon's process ID (the shell execs libvirtd), 0 when stopped.
func (d *Daemon) PID() int {
	if d.cmd == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Stop sends SIGTERM to libvirtd by PID, then SIGKILL after 10 s. Running
// guests survive, as they do a libvirtd restart in production.
func (d *Daemon) Stop() error {
	if d.cmd == nil {
		return nil
	}
	defer func() { d.cmd = nil }()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	d.cmd.Process.Kill()
	<-d.exited
	return errors.New("libvirtd did not stop on SIGTERM; killed")
}

// Virsh runs virsh against the daemon.
func (d *Daemon) Virsh(args ...string) (string, error) {
	cmd := exec.Command("virsh", append([]string{"-c", "qemu:///system?socket=" + d.Socket}, args...)...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return string(b), fmt.Errorf("virsh %s: %w: %s", strings.Join(args, " "), err, b)
	}
	return string(b), nil
}

// KillGuests kills, by PID file, every qemu this daemon started: cleanup of
// what the test made, also when the daemon itself is gone.
func (d *Daemon) KillGuests() {
	pids, _ := filepath.Glob(filepath.Join(d.Dir, "run", "qemu", "*.pid"))
	for _, p := range pids {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d", &pid); err == nil && pid > 1 {
			if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(cmdline), "qemu") {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}
