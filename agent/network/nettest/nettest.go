// Package nettest builds throwaway labs for the network drivers' root tests:
// "hosts" are network namespaces joined by a veth underlay on a bridge in
// another namespace, so nothing is added to the caller's namespace. Every
// namespace a lab makes starts with a prefix unique to the test process, and
// everything is removed in t.Cleanup, also when the test fails.
package nettest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/strata-infra/strata/agent/network/ovs/ovstest"
	"github.com/strata-infra/strata/internal/netprobe"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/pidfile"
)

// RequireRoot skips t unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t, "creates network namespaces, bridges, VXLAN devices and runs dnsmasq")
}

var labSeq atomic.Int32

// Prefix returns a namespace prefix unique to this process and call (the
// full pid and a counter), e.g. "stt4242a3-", and registers the removal of
// every namespace starting with it. It fails t when one exists already: a
// test never adopts what another left behind.
func Prefix(t testing.TB) string {
	t.Helper()
	p := fmt.Sprintf("stt%d%c%d-", os.Getpid(), 'a', labSeq.Add(1))
	if left, _ := netnsutil.List(p); len(left) > 0 {
		t.Fatalf("refusing to reuse namespaces under the test prefix %s: %v", p, left)
	}
	t.Cleanup(func() { RemoveNamespaces(t, p) })
	return p
}

// RemoveNamespaces deletes every namespace starting with prefix.
func RemoveNamespaces(t testing.TB, prefix string) {
	names, err := netnsutil.List(prefix)
	if err != nil {
		t.Errorf("list namespaces %q: %v", prefix, err)
	}
	for _, n := range names {
		if err := netnsutil.Delete(n); err != nil {
			t.Errorf("delete namespace %q: %v", n, err)
		}
	}
}

// Host is one simulated host of a lab.
type Host struct {
	Name     string     // gossip name, e.g. "h1"
	NS       string     // its namespace
	VTEP     netip.Addr // address on the underlay
	Prefix   string     // namespace prefix of its agent, e.g. "stt42a1-h1-"
	StateDir string
	// Driver is the host's L2 driver: "linuxbridge" ("" too) or "ovs".
	Driver string
	// OVS is the host's Open vSwitch when Driver is "ovs".
	OVS *ovstest.Switch
	// Datapath is the ovs driver's datapath: "netdev" (userspace), or ""
	// to let the driver detect it (the kernel's where it has one).
	Datapath string
	// CanaryEvery is how often the ovs driver's Watch checks its canary
	// flow (one ovs-ofctl run each time); 0 means 100 ms.
	CanaryEvery time.Duration
}

// Lab is a set of hosts on one underlay.
type Lab struct {
	Prefix string
	Hosts  []*Host
}

// UnderlayDev is the underlay device inside every host namespace.
const UnderlayDev = "eth0"

// NewLab makes n hosts with underlay addresses 172.30.0.1.. on a bridge in
// namespace <prefix>ul.
func NewLab(t testing.TB, n int) *Lab {
	t.Helper()
	RequireRoot(t)
	lab := &Lab{Prefix: Prefix(t)}
	ul := lab.Prefix + "ul"
	must(t, netnsutil.Create(ul))
	ulh := handle(t, ul)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "ul0"}}
	must(t, ulh.LinkAdd(br))
	must(t, ulh.LinkSetUp(br))
	for i := 1; i <= n; i++ {
		h := &Host{
			Name:     "h" + strconv.Itoa(i),
			NS:       lab.Prefix + "h" + strconv.Itoa(i),
			VTEP:     netip.AddrFrom4([4]byte{172, 30, 0, byte(i)}),
			StateDir: testenv.SharedTempDir(t),
		}
		h.Prefix = h.NS + "-"
		must(t, netnsutil.Create(h.NS))
		plugUnderlay(t, h, ulh, ul, br)
		lab.Hosts = append(lab.Hosts, h)
	}
	return lab
}

func plugUnderlay(t testing.TB, h *Host, ulh *netlink.Handle, ul string, br netlink.Link) {
	t.Helper()
	hh := handle(t, h.NS)
	ulNS, err := netns.GetFromPath(netnsutil.Path(ul))
	must(t, err)
	defer ulNS.Close()
	peer := "p-" + h.Name
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: UnderlayDev}, PeerName: peer, PeerNamespace: netlink.NsFd(ulNS)}
	must(t, hh.LinkAdd(v))
	l, err := hh.LinkByName(UnderlayDev)
	must(t, err)
	must(t, hh.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: h.VTEP.AsSlice(), Mask: net.CIDRMask(24, 32)}}))
	must(t, hh.LinkSetUp(l))
	lo, err := hh.LinkByName("lo")
	must(t, err)
	must(t, hh.LinkSetUp(lo))
	p, err := ulh.LinkByName(peer)
	must(t, err)
	must(t, ulh.LinkSetMaster(p, br))
	must(t, ulh.LinkSetUp(p))
}

func handle(t testing.TB, ns string) *netlink.Handle {
	t.Helper()
	h, err := netnsutil.Handle(ns)
	must(t, err)
	t.Cleanup(h.Close)
	return h
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Run runs a command inside namespace ns and returns its combined output.
func Run(ctx context.Context, ns string, name string, args ...string) (string, error) {
	return netprobe.Run(ctx, ns, name, args...)
}

// KillPidFiles sends SIGKILL to the processes named in the *.pid and "pid"
// files under dir: test cleanup of what the test itself started.
func KillPidFiles(dir string) { pidfile.KillAll(dir) }
