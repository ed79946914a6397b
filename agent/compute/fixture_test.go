package compute_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/compute"
	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/pkg/computespec"
)

var seq atomic.Int32

// testDriver is one agent's compute driver on host h1 with a domain prefix
// of its own, running its event loop until the test ends.
type testDriver struct {
	*compute.Driver
	prefix string
	hv     *compute.Libvirt
}

func newDriver(t *testing.T, sweep time.Duration) *testDriver {
	t.Helper()
	return newDriverWith(t, sweep, nil)
}

// newDriverWith is newDriver with more configuration (before New).
func newDriverWith(t *testing.T, sweep time.Duration, more func(*compute.Config)) *testDriver {
	t.Helper()
	e := requireEnv(t)
	prefix := fmt.Sprintf("stc%d-%d-", os.Getpid(), seq.Add(1))
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	hv := compute.NewLibvirt(e.daemon.Socket, log)
	cfg := compute.Config{
		Hypervisor: hv, DomainPrefix: prefix, StateDir: t.TempDir(), NetNS: e.hostA.NS,
		ShutdownTimeout: 2 * time.Second, SweepInterval: sweep, Logger: log,
		Reserved: computespec.Capacity{RAMMiB: 256},
	}
	if more != nil {
		more(&cfg)
	}
	d, err := compute.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	td := &testDriver{Driver: d, prefix: prefix, hv: hv}
	t.Cleanup(func() {
		// Delete whatever this driver made, then stop it.
		if err := d.Set(context.Background(), nil); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		cancel()
		<-done
		d.Close()
	})
	return td
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// status returns the observed state of one instance.
func (d *testDriver) status(id string) compute.InstanceStatus {
	for _, s := range d.Status().Instances {
		if s.ID == id {
			return s
		}
	}
	return compute.InstanceStatus{}
}

// testNet is a network with DHCP on h1 (where the guest is) and an
// endpoint with a static address on h2 to ping it from.
type testNet struct {
	vni     uint32
	port    computespec.Port
	guestIP string
	epNS    string
}

func newNet(t *testing.T) *testNet {
	t.Helper()
	e := requireEnv(t)
	n := seq.Add(1)
	vni := uint32(7000 + n)
	mac := nettest.MAC(int(n)<<8 | 1)
	nw := network.Network{ID: fmt.Sprintf("net%d", n), VNI: vni, Subnets: []network.Subnet{{
		ID: "s", CIDR: netip.MustParsePrefix("10.77.0.0/24"), Gateway: netip.MustParseAddr("10.77.0.1"), DHCP: true,
	}}}
	ports := []network.Port{
		{ID: fmt.Sprintf("dhcp%d", n), NetworkID: nw.ID, Host: "h1", Owner: network.OwnerDHCP,
			MAC: nettest.MAC(int(n)<<8 | 2), IPs: []netip.Addr{netip.MustParseAddr("10.77.0.2")}},
		{ID: fmt.Sprintf("vm%d", n), NetworkID: nw.ID, Host: "h1", MAC: mac, HostName: "guest",
			IPs: []netip.Addr{netip.MustParseAddr("10.77.0.10")}},
		{ID: fmt.Sprintf("ep%d", n), NetworkID: nw.ID, Host: "h2",
			MAC: nettest.MAC(int(n)<<8 | 3), IPs: []netip.Addr{netip.MustParseAddr("10.77.0.20")}},
	}
	nets := []network.Network{nw}
	for _, h := range []*nettest.Host{e.hostA, e.hostB} {
		a := nettest.NewAgent(t, h)
		st := e.lab.HostState(h, nets, ports)
		if h == e.hostB {
			st.LocalEndpoints = []network.Endpoint{{PortID: ports[2].ID, IfName: "eth0", MAC: ports[2].MAC,
				Addr: netip.MustParsePrefix("10.77.0.20/24")}}
		}
		a.Set(t, st)
		// Registered after NewAgent's cleanups, so it runs before them.
		t.Cleanup(func() { a.Set(t, e.lab.HostState(h, nil, nil)) })
	}
	return &testNet{
		vni:     vni,
		port:    computespec.Port{ID: ports[1].ID, NetworkID: nw.ID, VNI: vni, MAC: mac, Bridge: network.BridgeName(vni)},
		guestIP: "10.77.0.10",
		epNS:    e.hostB.Prefix + network.EndpointNSPart + ports[2].ID,
	}
}

// instance is a 1-vCPU TCG guest booting the test kernel directly, whose
// initramfs mounts the root filesystem from its disk (made from the raw
// test image); the guest prints the seed's user-data marker line,
// "strata-marker: <id>-user-data", on its console.
func instance(id string, ports ...computespec.Port) compute.Instance {
	e := env
	return compute.Instance{
		Spec: computespec.Instance{ID: id, Flavor: "tiny", Image: "raw", Ports: ports, Power: computespec.PowerRunning,
			UserData: []byte("#cloud-config\n# strata-marker: " + id + "-user-data\n"), SSHKey: "ssh-ed25519 AAAAtest test@strata"},
		Flavor: computespec.Flavor{Name: "tiny", VCPUs: 1, RAMMiB: 160, DiskGiB: 1},
		Image:  computespec.Image{ID: "raw", Format: computespec.FormatRaw, Path: e.image},
		Boot: &compute.DirectBoot{Kernel: e.kernel, Initrd: e.initrd, Firmware: "/usr/share/qemu/qboot.rom",
			Cmdline: "console=ttyS0 panic=-1 quiet"},
	}
}

// pingUntil pings ip from ns until one reply comes back.
func pingUntil(t *testing.T, ns, ip string, timeout time.Duration) time.Duration {
	t.Helper()
	return waitFor(t, timeout, "ping "+ip+" from "+ns, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, recv, _ := nettest.Ping(ctx, ns, ip, 1, 200*time.Millisecond)
		return recv > 0
	})
}
