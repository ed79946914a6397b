package compute_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/strata-infra/strata/agent/compute/virttest"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// testEnv is shared by the package's root tests: two lab hosts joined by a
// veth underlay, and one libvirtd running in host h1's namespace (where the
// networks' bridges are, as libvirtd and the bridges share the root
// namespace of a real host). One libvirtd for all tests, because its first
// capabilities call probes qemu for ~8 s.
type testEnv struct {
	dir          string
	lab          *nettest.Lab
	hostA, hostB *nettest.Host
	daemon       *virttest.Daemon
	kernel       string
	initrd       string
	image        string // a small raw root disk image
}

var (
	env                     *testEnv
	missingPart, skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		if missingPart, skipReason = virttest.Available(); missingPart != "" {
			return m.Run()
		}
		e, err := setup()
		defer e.teardown()
		if err != nil {
			fmt.Fprintln(os.Stderr, "compute test setup:", err)
			return 1
		}
		env = e
		return m.Run()
	}())
}

// requireEnv skips t when libvirtd cannot run here (fails it under
// STRATA_STRICT=1).
func requireEnv(t *testing.T) *testEnv {
	t.Helper()
	if env == nil {
		testenv.Missing(t, missingPart, skipReason)
	}
	return env
}

func setup() (*testEnv, error) {
	dir, err := testenv.MkdirTemp("strata-compute")
	if err != nil {
		return &testEnv{}, err
	}
	// dnsmasq drops to an unprivileged user and must pass it.
	if err := os.Chmod(dir, 0o711); err != nil {
		return &testEnv{}, err
	}
	e := &testEnv{dir: dir}
	out, err := exec.Command("bash", "../../testdata/guest/build.sh").Output()
	if err != nil {
		return e, fmt.Errorf("build guest: %w", err)
	}
	g := strings.TrimSpace(string(out))
	e.kernel, e.initrd = filepath.Join(g, "vmlinux"), filepath.Join(g, "initramfs.cpio.gz")
	// The guest's image: an ext2 root filesystem whose /sbin/init reads
	// the NoCloud seed (testdata/guest/build.sh).
	e.image = filepath.Join(g, "root.img")
	if e.lab, err = newLab(fmt.Sprintf("stc%d-", os.Getpid()), dir); err != nil {
		return e, err
	}
	e.hostA, e.hostB = e.lab.Hosts[0], e.lab.Hosts[1]
	if e.daemon, err = virttest.New(filepath.Join(dir, "libvirt"), e.hostA.NS); err != nil {
		return e, err
	}
	start := time.Now()
	if err := e.daemon.Start(); err != nil {
		return e, err
	}
	up := time.Since(start)
	start = time.Now()
	if err := firstCapabilities(e.daemon.Socket); err != nil {
		return e, err
	}
	fmt.Printf("libvirtd: socket up in %v (pid %d), first capabilities call %v\n",
		up.Round(time.Millisecond), e.daemon.PID(), time.Since(start).Round(time.Millisecond))
	return e, nil
}

// firstCapabilities makes libvirtd probe qemu once, outside any timing.
func firstCapabilities(socket string) error {
	l := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(socket)))
	if err := l.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		return fmt.Errorf("connect to libvirtd: %w", err)
	}
	defer l.Disconnect()
	if _, err := l.ConnectGetCapabilities(); err != nil {
		return fmt.Errorf("libvirtd capabilities: %w", err)
	}
	return nil
}

func (e *testEnv) teardown() {
	if e.daemon != nil {
		e.daemon.KillGuests()
		if err := e.daemon.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	if e.lab != nil {
		names, _ := netnsutil.List(e.lab.Prefix)
		for _, n := range names {
			if err := netnsutil.Delete(n); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}
	}
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
}

// newLab is nettest.NewLab for TestMain, which has no testing.TB: hosts
// h1 and h2 at 172.30.0.1 and .2 on a bridge in namespace <prefix>ul.
func newLab(prefix, dir string) (*nettest.Lab, error) {
	lab := &nettest.Lab{Prefix: prefix}
	ul := prefix + "ul"
	if err := netnsutil.Create(ul); err != nil {
		return lab, err
	}
	ulh, err := netnsutil.Handle(ul)
	if err != nil {
		return lab, err
	}
	defer ulh.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "ul0"}}
	if err := errors.Join(ulh.LinkAdd(br), ulh.LinkSetUp(br)); err != nil {
		return lab, fmt.Errorf("underlay bridge: %w", err)
	}
	for i := 1; i <= 2; i++ {
		h := &nettest.Host{
			Name: fmt.Sprintf("h%d", i), NS: fmt.Sprintf("%sh%d", prefix, i),
			VTEP: netip.AddrFrom4([4]byte{172, 30, 0, byte(i)}), StateDir: filepath.Join(dir, fmt.Sprintf("h%d", i)),
		}
		h.Prefix = h.NS + "-"
		if err := netnsutil.Create(h.NS); err != nil {
			return lab, err
		}
		if err := plugUnderlay(h, ulh, ul, br); err != nil {
			return lab, fmt.Errorf("underlay of %s: %w", h.Name, err)
		}
		lab.Hosts = append(lab.Hosts, h)
	}
	return lab, nil
}

func plugUnderlay(h *nettest.Host, ulh *netlink.Handle, ul string, br netlink.Link) error {
	hh, err := netnsutil.Handle(h.NS)
	if err != nil {
		return err
	}
	defer hh.Close()
	ulNS, err := netns.GetFromPath(netnsutil.Path(ul))
	if err != nil {
		return err
	}
	defer ulNS.Close()
	peer := "p-" + h.Name
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: nettest.UnderlayDev}, PeerName: peer, PeerNamespace: netlink.NsFd(ulNS)}
	if err := hh.LinkAdd(v); err != nil {
		return err
	}
	for _, name := range []string{nettest.UnderlayDev, "lo"} {
		l, err := hh.LinkByName(name)
		if err != nil {
			return err
		}
		if name == nettest.UnderlayDev {
			addr := &netlink.Addr{IPNet: &net.IPNet{IP: h.VTEP.AsSlice(), Mask: net.CIDRMask(24, 32)}}
			if err := hh.AddrAdd(l, addr); err != nil {
				return err
			}
		}
		if err := hh.LinkSetUp(l); err != nil {
			return err
		}
	}
	p, err := ulh.LinkByName(peer)
	if err != nil {
		return err
	}
	return errors.Join(ulh.LinkSetMaster(p, br), ulh.LinkSetUp(p))
}

// waitFor polls cond every 100 ms until it holds or timeout (scaled by
// STRATA_TIMEOUT_FACTOR) passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	timeout = testenv.Scale(timeout)
	start := time.Now()
	for time.Since(start) < timeout {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v", what, timeout)
	return 0
}
