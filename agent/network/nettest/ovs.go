package nettest

import (
	"net/netip"
	"testing"

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
	for i, h := range lab.Hosts {
		h.Driver = drivers[i]
		if h.Driver == "ovs" {
			h.OVS = ovstest.Start(t, h.NS)
			h.OVS.Underlay(t, UnderlayDev, netip.PrefixFrom(h.VTEP, 24))
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
