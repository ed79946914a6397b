package lab

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"

	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/pidfile"
)

// A lab libvirtd (see Libvirtd, virttest) keeps everything under one
// directory, which it sees through bind mounts in a mount namespace of its
// own: <dir>/etc is /etc/libvirt, <dir>/run is /run/libvirt, so the pid
// file of a guest's qemu is <dir>/run/qemu/<domain>.pid on the host and
// /run/libvirt/qemu/<domain>.pid inside. The qemu stays in that mount
// namespace (qemu.conf: namespaces = []) and outlives its libvirtd.

// libvirtdDirs are the directories of the libvirtds below dir: those
// holding etc/libvirtd.conf.
func libvirtdDirs(dir string) []string {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if !d.IsDir() && d.Name() == "libvirtd.conf" && filepath.Base(filepath.Dir(p)) == "etc" {
			dirs = append(dirs, filepath.Dir(filepath.Dir(p)))
		}
		return nil
	})
	return dirs
}

// GuestQemu is one guest's qemu started by a lab libvirtd.
type GuestQemu struct {
	PID     int
	Domain  string
	PIDFile string // on the host: <libvirtd dir>/run/qemu/<domain>.pid
}

// qemuOf returns the pid in pidFile (<lvdir>/run/qemu/<domain>.pid) when
// that process is a live qemu that the libvirtd of lvdir started, else 0.
// Pids are reused and pid files outlive crashes, so the pid is trusted
// only when the process's command line runs qemu and, seen through its own
// root and mount namespace, /run/libvirt/qemu/<domain>.pid is this very
// file: only a process inside that libvirtd's mount namespace sees it so.
func qemuOf(pidFile string) int {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	if !strings.HasPrefix(filepath.Base(string(argv0)), "qemu") {
		return 0
	}
	ours, err := os.Stat(pidFile)
	if err != nil {
		return 0
	}
	inside, err := os.Stat(fmt.Sprintf("/proc/%d/root/run/libvirt/qemu/%s", pid, filepath.Base(pidFile)))
	if err != nil || !os.SameFile(ours, inside) {
		return 0
	}
	return pid
}

// Guests lists the live guest qemus of every libvirtd below the lab's
// directory (make lab's lv1..lvN), by their pid files.
func (l *Lab) Guests() []GuestQemu {
	var out []GuestQemu
	for _, lv := range libvirtdDirs(l.Dir) {
		files, _ := filepath.Glob(filepath.Join(lv, "run", "qemu", "*.pid"))
		for _, f := range files {
			if pid := qemuOf(f); pid != 0 {
				out = append(out, GuestQemu{PID: pid, Domain: strings.TrimSuffix(filepath.Base(f), ".pid"), PIDFile: f})
			}
		}
	}
	return out
}

// StopGuests ends every guest the lab's libvirtds started: each libvirtd
// still answering destroys its running domains, then any qemu left (its
// libvirtd dead or stuck) is killed by the pid its pid file holds, once
// qemuOf proves the process is that libvirtd's qemu: a qemu not started by
// the lab is never touched. It waits until they are gone. The agents,
// which would start them again, must be stopped first.
func (l *Lab) StopGuests() error {
	for _, lv := range libvirtdDirs(l.Dir) {
		if pidfile.Alive(filepath.Join(lv, "libvirtd.pid")) {
			destroyDomains(filepath.Join(lv, "sock", "libvirt-sock"), testenv.Scale(30*time.Second))
		}
	}
	left := l.Guests()
	for _, g := range left {
		_ = syscall.Kill(g.PID, syscall.SIGKILL)
	}
	limit := testenv.Scale(15 * time.Second)
	deadline := time.Now().Add(limit)
	for _, g := range left {
		for !gone(g.PID) {
			if time.Now().After(deadline) {
				return fmt.Errorf("guest %s's qemu (pid %d) still running %s after SIGKILL", g.Domain, g.PID, limit)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// gone reports whether pid has exited: no such process, or a zombie
// (its parent, a dead libvirtd's heir, may never reap it).
func gone(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(f) > 0 && (f[0] == "Z" || f[0] == "X")
}

// destroyDomains asks the libvirtd at socket to destroy each running
// domain, giving up after limit (a stuck libvirtd: the caller kills what
// is left by pid).
func destroyDomains(socket string, limit time.Duration) {
	done := make(chan struct{})
	l := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(socket), dialers.WithLocalTimeout(2*time.Second)))
	go func() {
		defer close(done)
		if err := l.ConnectToURI(golibvirt.QEMUSystem); err != nil {
			return
		}
		doms, _, err := l.ConnectListAllDomains(1, golibvirt.ConnectListDomainsActive)
		if err == nil {
			for _, d := range doms {
				// An error here (already gone, stuck in librbd) leaves
				// the qemu to the kill by pid.
				_ = l.DomainDestroyFlags(d, golibvirt.DomainDestroyDefault)
			}
		}
		_ = l.Disconnect()
	}()
	select {
	case <-done:
	case <-time.After(limit):
		_ = l.Disconnect()
	}
}
