package secgroup_test

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/secgroup"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
	"golang.org/x/sys/unix"
)

// TestLabPortSecurityPassesRARP: the announcement qemu sends when a guest
// resumes after a live migration is a RARP frame from the guest's MAC. On
// the destination the port's filter is in force before the guest resumes,
// so the filter must let it pass, or the bridge goes on sending the
// guest's traffic to its old host. The test sends, from a filtered port's
// namespace, a RARP from a MAC that is not the port's and then one from
// the MAC of its allowed address pair: the bridge learns the pair's MAC
// (the frame passed) and never the other (it was dropped).
func TestLabPortSecurityPassesRARP(t *testing.T) {
	lab := nettest.NewLabWith(t, 1, "linuxbridge")
	h := lab.Hosts[0]
	ag := nettest.NewAgent(t, h)
	n := network.Network{ID: "net-a", VNI: 5001, Subnets: []network.Subnet{{ID: "s", CIDR: netip.MustParsePrefix("10.1.1.0/24")}}}
	// The port sends from its own MAC all the time (the bridge knows
	// it); the MAC of its allowed pair, only in this test's RARP.
	pairMAC := net.HardwareAddr{0x02, 0x77, 0x77, 0x77, 0x77, 0x77}
	p := network.Port{ID: "a", NetworkID: n.ID, Host: h.Name, MAC: nettest.MAC(1), IPs: []netip.Addr{netip.MustParseAddr("10.1.1.10")}, SecurityGroups: []string{"app"},
		AllowedAddressPairs: []network.AddressPair{{Prefix: netip.MustParsePrefix("10.1.1.50/32"), MAC: pairMAC}}}
	st := lab.HostState(h, []network.Network{n}, nil)
	st.Ports = []network.Port{p}
	st.LocalEndpoints = []network.Endpoint{{PortID: p.ID, IfName: "eth0", Addr: netip.PrefixFrom(p.IPs[0], 24)}}
	st.SecurityGroups = []netspec.SecurityGroup{{ID: "app", Rules: []netspec.SecurityGroupRule{egressAll}}}
	ag.Set(t, st)
	d, err := secgroup.New(secgroup.Config{NetNS: h.NS, Logger: nettest.Logger(t)})
	must(t, err)
	must(t, d.Set(context.Background(), st))

	veth := netspec.EndpointVethName(p.ID)
	learned := func(mac net.HardwareAddr) bool {
		out, err := exec.Command("ip", "netns", "exec", h.NS, "bridge", "fdb", "show", "dev", veth).CombinedOutput()
		if err != nil {
			t.Fatalf("bridge fdb show dev %s: %v: %s", veth, err, out)
		}
		return strings.Contains(string(out), mac.String())
	}
	forged := net.HardwareAddr{0x02, 0x66, 0x66, 0x66, 0x66, 0x66}
	ns := ag.EP.Namespace(network.Endpoint{PortID: p.ID})
	sendRARP(t, ns, "eth0", forged)
	sendRARP(t, ns, "eth0", pairMAC)
	testenv.WaitTrue(t, testenv.Scale(10*time.Second), "the bridge to learn the port's pair MAC from its RARP", func() bool {
		if learned(pairMAC) {
			return true
		}
		sendRARP(t, ns, "eth0", pairMAC)
		return false
	})
	if learned(forged) {
		t.Fatalf("the bridge learned %s from a RARP the port forged", forged)
	}
}

// sendRARP sends, on link dev of namespace ns, the RARP request qemu
// announces a NIC with: broadcast, from mac, asking for mac's address.
func sendRARP(t *testing.T, ns, dev string, mac net.HardwareAddr) {
	t.Helper()
	f := make([]byte, 60)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:], 0x8035)
	binary.BigEndian.PutUint16(f[14:], 1)      // ethernet
	binary.BigEndian.PutUint16(f[16:], 0x0800) // IPv4
	f[18], f[19] = 6, 4
	binary.BigEndian.PutUint16(f[20:], 3) // reverse request
	copy(f[22:28], mac)
	copy(f[32:38], mac)
	err := netnsutil.Do(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}})
	})
	if err != nil {
		t.Fatalf("send a RARP from %s in %s: %v", mac, ns, err)
	}
}
