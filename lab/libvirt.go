package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/strata-infra/strata/agent/compute/virttest"
)

// Libvirtd is a private libvirtd in one lab host's network namespace (so
// the taps it makes land next to that host's bridges), in a mount
// namespace of its own, listening on a socket in its directory, started
// and stopped by PID: agent/compute/virttest's daemon.
type Libvirtd struct {
	*virttest.Daemon
	Host int
}

// LibvirtAvailable names the part that keeps libvirtd and qemu from running
// here and why, or returns "".
func LibvirtAvailable() (part, reason string) { return virttest.Available() }

// StartLibvirtd starts a libvirtd for host i under dir (kept short: the
// socket path must fit a sockaddr_un) and waits until it has probed qemu
// (≈10 s the first time), so the agent's first calls are fast. The host's
// namespace is made when the lab has not made it yet.
func (l *Lab) StartLibvirtd(i int, dir string) (*Libvirtd, error) {
	if ns := l.Namespace(i); !nsExists(ns) {
		if err := ip("netns", "add", ns); err != nil {
			return nil, err
		}
	}
	d, err := virttest.New(dir, l.Namespace(i))
	if err != nil {
		return nil, err
	}
	lv := &Libvirtd{Daemon: d, Host: i}
	if err := d.Start(); err != nil {
		return nil, err
	}
	if out, err := d.Virsh("capabilities"); err != nil {
		lv.Stop()
		return nil, fmt.Errorf("libvirtd of h%d: %w: %s", i, err, out)
	}
	return lv, nil
}

// Stop kills the guests it started and stops it, by PID.
func (lv *Libvirtd) Stop() error {
	lv.KillGuests()
	return lv.Daemon.Stop()
}

// QemuPID is the pid of the qemu running domain, from libvirtd's pid file.
func (lv *Libvirtd) QemuPID(domain string) (int, error) {
	b, err := os.ReadFile(filepath.Join(lv.Dir, "run", "qemu", domain+".pid"))
	if err != nil {
		return 0, err
	}
	var pid int
	_, err = fmt.Sscanf(strings.TrimSpace(string(b)), "%d", &pid)
	return pid, err
}

// Guest is the test guest built by testdata/guest/build.sh (cached in
// build/guest): Debian's kernel, an initramfs that only loads drivers and
// mounts the root filesystem from the instance's disk, and the image: a raw
// ext2 root filesystem whose /sbin/init reads the NoCloud seed.
type Guest struct {
	Kernel, Initrd, Image string
}

// BuildGuest builds (or finds cached) the test guest of the repository at repo.
func BuildGuest(repo, dir string) (Guest, error) {
	cmd := exec.Command("bash", filepath.Join(repo, "testdata", "guest", "build.sh"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return Guest{}, fmt.Errorf("build guest: %w: %s", err, stderr.String())
	}
	g := strings.TrimSpace(string(out))
	return Guest{Kernel: filepath.Join(g, "vmlinux"), Initrd: filepath.Join(g, "initramfs.cpio.gz"), Image: filepath.Join(g, "root.img")}, nil
}

// ComputeArgs are the agent flags that turn compute on against lv, with
// guests booting the test kernel directly (qboot firmware: faster).
// no_timer_check: on a loaded host a TCG guest's timer ticks late and the
// kernel's IO-APIC timer check panics the boot before the serial console
// is up; with panic=-1 libvirt restarts it, silently, again and again (a
// lab guest with an empty console for 8 minutes, its disk never read).
func ComputeArgs(lv *Libvirtd, g Guest, shutdown time.Duration) []string {
	return []string{"--compute", "--libvirt-socket", lv.Socket,
		"--shutdown-timeout", shutdown.String(),
		"--guest-kernel", g.Kernel, "--guest-initrd", g.Initrd,
		"--guest-cmdline", "console=ttyS0 panic=-1 quiet no_timer_check", "--guest-firmware", "/usr/share/qemu/qboot.rom"}
}

// MigrationArgs links <dir>/<host> to each lab host's libvirtd socket and
// returns the agent flags that reach a peer's libvirtd through those links
// (one {host} template for every host, as qemu+tls://{host}/system is
// across machines); live migrations' memory is tunnelled through them.
func MigrationArgs(dir string, lvs map[int]*Libvirtd, hostName func(int) string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for i, lv := range lvs {
		link := filepath.Join(dir, hostName(i))
		os.Remove(link)
		if err := os.Symlink(lv.Socket, link); err != nil {
			return nil, err
		}
	}
	return []string{"--migration-uri", "qemu+unix:///system?socket=" + filepath.Join(dir, "{host}")}, nil
}
