package nettest

import (
	"net/netip"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network/internal/nlink"
	"github.com/strata-infra/strata/agent/network/ovs/ovstest"
)

// Drivers are the L2 drivers the driver-agnostic lab tests run over.
var Drivers = []string{"linuxbridge", "ovs"}

// NewLabDrivers makes a lab with one host per entry of drivers, each host
// running that L2 driver ("linuxbridge" or "ovs"). An ovs host gets its own
// ovsdb-server and ovs-vswitchd (userspace datapath) and its VTEP moves to
// a netdev bridge carrying its underlay.
func NewLabDrivers(t testing.TB, drivers ...string) *Lab {
	t.Helper()
	for _, d := range drivers {
		if d == "ovs" {
			ovstest.Require(t)
		}
	}
	lab := NewLab(t, len(drivers))
	anyOVS := false
	for i, h := range lab.Hosts {
		h.Driver = drivers[i]
		if h.Driver == "ovs" {
			anyOVS = true
			h.Datapath = "netdev"
			h.OVS = ovstest.Start(t, h.NS)
			h.OVS.Underlay(t, UnderlayDev, netip.PrefixFrom(h.VTEP, 24))
		}
	}
	if !anyOVS {
		return lab
	}
	// A real NIC puts full checksums on the wire; a veth underlay passes
	// the kernel's unfinished ones along, which OVS's userspace datapath
	// reads as bad. Make the linuxbridge hosts' underlay finish them.
	for _, h := range lab.Hosts {
		if h.Driver != "ovs" {
			must(t, nlink.TxChecksumOff(h.NS, UnderlayDev))
		}
	}
	return lab
}

// NewLabWith makes n hosts that all run driver.
func NewLabWith(t testing.TB, n int, driver string) *Lab {
	t.Helper()
	ds := make([]string, n)
	for i := range ds {
		ds[i] = driver
	}
	return NewLabDrivers(t, ds...)
}

// NewKernelOVSLab makes n hosts on the ovs driver with the kernel
// datapath: each host's Open vSwitch runs in its namespace, and the driver
// detects the datapath (system where the openvswitch module is loaded). The
// VTEP stays on the underlay device, as on a real host: the kernel routes
// the tunnels, no netdev bridge carries them. For the kernel-test guest.
func NewKernelOVSLab(t testing.TB, n int) *Lab {
	t.Helper()
	ovstest.Require(t)
	lab := NewLab(t, n)
	for _, h := range lab.Hosts {
		h.Driver = "ovs"
		h.OVS = ovstest.Start(t, h.NS)
		// The agent's own interval. Each check was an ovs-ofctl process
		// then: at 100 ms on two hosts, that process churn alone starved
		// the guest's one TCG CPU, and with it ovs-vswitchd's handler
		// threads. It is one OpenFlow request now, still one a second.
		h.CanaryEvery = time.Second
	}
	return lab
}
