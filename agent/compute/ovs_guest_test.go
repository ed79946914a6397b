package compute_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/compute"
	"github.com/strata-infra/strata/agent/compute/virttest"
	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/ovs"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/computespec"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
)

// TestGuestOnOVS: one TCG guest on an Open vSwitch host (userspace
// datapath), booted by a libvirtd of its own that runs ovs-vsctl against
// the host's switch (OVS_RUNDIR in its environment). Two checks share it:
//   - tap adoption: libvirt adds the guest's tap to the integration bridge
//     itself (<virtualport type='openvswitch'>) and sets its Interface
//     row's external_ids; the agent tags the port and adds its flows, keeps
//     libvirt's IDs, and then changes nothing more (no fight with libvirt);
//   - security group through the userspace datapath's conntrack: the guest
//     takes its address from DHCP, an endpoint on the network fetches a
//     page and a 230 KB file from the port the group allows, gets no
//     answer on the port it does not, and an answer there once the group
//     allows it (so the guest listens there and the drop was the group's).
func TestGuestOnOVS(t *testing.T) {
	requireEnv(t) // the guest's kernel and image
	start := time.Now()
	defer func() { fmt.Printf("TestGuestOnOVS: %v\n", time.Since(start).Round(time.Second)) }()
	lab := nettest.NewLabWith(t, 1, "ovs")
	h := lab.Hosts[0]
	ag := nettest.NewAgent(t, h)

	n := network.Network{ID: "onet", VNI: 7801, Subnets: []network.Subnet{{
		ID: "s", CIDR: netip.MustParsePrefix("10.78.0.0/24"), Gateway: netip.MustParseAddr("10.78.0.1"), DHCP: true,
	}}}
	guestIP := "10.78.0.10"
	ports := []network.Port{
		{ID: "odhcp", NetworkID: n.ID, Host: h.Name, Owner: network.OwnerDHCP, MAC: nettest.MAC(0x7801),
			IPs: []netip.Addr{netip.MustParseAddr("10.78.0.2")}},
		{ID: "ovm", NetworkID: n.ID, Host: h.Name, MAC: nettest.MAC(0x7802), HostName: "guest",
			IPs: []netip.Addr{netip.MustParseAddr(guestIP)}, SecurityGroups: []string{"web"}},
		{ID: "oep", NetworkID: n.ID, Host: h.Name, MAC: nettest.MAC(0x7803),
			IPs: []netip.Addr{netip.MustParseAddr("10.78.0.20")}},
	}
	egress := netspec.SecurityGroupRule{Direction: netspec.Egress}
	web := func(ports ...int) []netspec.SecurityGroup {
		rules := []netspec.SecurityGroupRule{egress}
		for _, p := range ports {
			rules = append(rules, netspec.SecurityGroupRule{Direction: netspec.Ingress, Protocol: netspec.ProtoTCP,
				Ports: &netspec.PortRange{From: p, To: p}})
		}
		return []netspec.SecurityGroup{{ID: "web", Rules: rules}}
	}
	st := lab.HostState(h, []network.Network{n}, ports)
	st.LocalEndpoints = []network.Endpoint{{PortID: "oep", IfName: "eth0", MAC: ports[2].MAC,
		Addr: netip.MustParsePrefix("10.78.0.20/24")}}
	st.SecurityGroups = web(8080)
	ag.Set(t, st)
	t.Cleanup(func() { ag.Set(t, lab.HostState(h, nil, nil)) })
	epNS := ag.EP.Namespace(network.Endpoint{PortID: "oep"})

	// A libvirtd of its own in the OVS host's namespace, whose ovs-vsctl
	// finds that host's switch.
	dir, err := testenv.MkdirTemp("s15virt")
	if err != nil {
		t.Fatal(err)
	}
	dmn, err := virttest.New(filepath.Join(dir, "libvirt"), h.NS)
	if err != nil {
		t.Fatal(err)
	}
	dmn.Env = []string{"OVS_RUNDIR=" + h.OVS.Dir, "OVS_DBDIR=" + h.OVS.Dir}
	t.Cleanup(func() {
		dmn.KillGuests()
		if err := dmn.Stop(); err != nil {
			t.Error(err)
		}
		os.RemoveAll(dir)
	})
	if err := dmn.Start(); err != nil {
		t.Fatal(err)
	}
	probe := time.Now()
	if err := firstCapabilities(dmn.Socket); err != nil {
		t.Fatal(err)
	}
	t.Logf("libvirtd up, first capabilities call %v", time.Since(probe).Round(time.Millisecond))

	log := nettest.Logger(t)
	cd, err := compute.New(compute.Config{
		Hypervisor: compute.NewLibvirt(dmn.Socket, log), DomainPrefix: fmt.Sprintf("s15o%d-", os.Getpid()),
		StateDir: t.TempDir(), NetNS: h.NS, ShutdownTimeout: 2 * time.Second, SweepInterval: time.Second,
		Logger: log, Reserved: computespec.Capacity{RAMMiB: 256},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); cd.Run(ctx) }()
	t.Cleanup(func() {
		if err := cd.Set(context.Background(), nil); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		cancel()
		<-done
		cd.Close()
	})
	// Where the tap plugs in, as the agent asks its network side: on the
	// userspace datapath, with the NIC's checksum offload off.
	b := ag.OVS.Binding(n)
	if !b.FullChecksums {
		t.Error("the userspace datapath's binding does not ask for full checksums")
	}
	port := computespec.Port{ID: "ovm", NetworkID: n.ID, VNI: n.VNI, MAC: ports[1].MAC,
		Bridge: b.Bridge, Switch: string(b.Type), FullChecksums: b.FullChecksums}
	in := instance("ovm", port)
	// Web servers on 8080 and 8081 (the group lets one through): a page,
	// and a file of some 230 KB whose TCP segments the guest's NIC
	// checksums as it sends them.
	for _, c := range []string{
		"mkdir -p /run/www; echo strata-guest web >/run/www/index.html; seq 1 40000 >/run/www/big",
		"busybox httpd -p 8080 -h /run/www",
		"busybox httpd -p 8081 -h /run/www",
	} {
		in.Spec.UserData = append(in.Spec.UserData, "strata-run: "+c+"\n"...)
	}
	if err := cd.Set(context.Background(), []compute.Instance{in}); err != nil {
		t.Fatal(err)
	}
	status := func() string {
		for _, s := range cd.Status().Instances {
			if s.ID == "ovm" {
				return s.ConsoleLog
			}
		}
		return ""
	}
	defer func() {
		if t.Failed() {
			t.Logf("guest console:\n%s", status())
		}
	}()
	lease := waitFor(t, 300*time.Second, "the guest's DHCP lease on the OVS host", func() bool {
		return strings.Contains(status(), "strata-guest: lease "+guestIP)
	})
	t.Logf("guest leased %s %v after start", guestIP, lease.Round(time.Millisecond))
	waitFor(t, 120*time.Second, "the guest's web servers", func() bool {
		return strings.Contains(status(), "strata-guest: ran user-data commands")
	})

	// Tap adoption: libvirt's port, the agent's tag and IDs on it.
	tap := netspec.TapName("ovm")
	vsctl := func(args ...string) string {
		t.Helper()
		c, cancel := context.WithTimeout(context.Background(), testenv.Scale(30*time.Second))
		defer cancel()
		out, err := h.OVS.Vsctl(c, args...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	var tag string
	waitFor(t, 30*time.Second, "the agent tagging libvirt's tap", func() bool {
		tag = vsctl("--if-exists", "get", "Port", tap, "tag")
		return tag != "" && tag != "[]"
	})
	if br := vsctl("port-to-br", tap); br != ovs.DefaultBridge {
		t.Errorf("tap %s on bridge %q, want %q", tap, br, ovs.DefaultBridge)
	}
	ids := vsctl("get", "Port", tap, "external_ids")
	if !strings.Contains(ids, `strata-kind=tap`) || !strings.Contains(ids, `strata-vni="7801"`) {
		t.Errorf("port %s external_ids %s: want the agent's kind and network", tap, ids)
	}
	// libvirt's IDs stay: the attached MAC and the domain's UUID.
	ifIDs := vsctl("get", "Interface", tap, "external_ids")
	if !strings.Contains(ifIDs, `attached-mac="`+ports[1].MAC.String()+`"`) || !strings.Contains(ifIDs, "vm-id=") {
		t.Errorf("interface %s external_ids %s: want libvirt's attached-mac and vm-id", tap, ifIDs)
	}
	ofport := vsctl("get", "Interface", tap, "ofport")
	c, cancelDump := context.WithTimeout(context.Background(), testenv.Scale(30*time.Second))
	flows, err := ag.OVS.DumpFlows(c)
	cancelDump()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(flows, "in_port="+ofport+" ") && !strings.Contains(flows, "in_port="+ofport+",") {
		t.Errorf("no flow from the tap's OpenFlow port %s:\n%s", ofport, flows)
	}

	get := func(p int, path string, timeout time.Duration) (string, error) {
		cl := &http.Client{Timeout: testenv.Scale(timeout), Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, nw, addr string) (net.Conn, error) {
				var c net.Conn
				err := netnsutil.Do(epNS, func() (err error) {
					c, err = net.DialTimeout(nw, addr, 3*time.Second)
					return err
				})
				return c, err
			},
		}}
		r, err := cl.Get("http://" + net.JoinHostPort(guestIP, strconv.Itoa(p)) + path)
		if err != nil {
			return "", err
		}
		defer r.Body.Close()
		b, err := io.ReadAll(r.Body)
		return string(b), err
	}
	var want strings.Builder
	for i := 1; i <= 40000; i++ {
		want.WriteString(strconv.Itoa(i) + "\n")
	}
	fetch := func(p int) {
		t.Helper()
		var page string
		testenv.WaitFor(t, 60*time.Second, fmt.Sprintf("the guest's page on port %d", p), func() (err error) {
			page, err = get(p, "/", 10*time.Second)
			return err
		})
		if page != "strata-guest web\n" {
			t.Errorf("port %d: page %q", p, page)
		}
		big, err := get(p, "/big", 60*time.Second)
		if err != nil {
			t.Fatalf("port %d: the 230 KB file: %v", p, err)
		}
		if big != want.String() {
			t.Errorf("port %d: the 230 KB file came back as %d bytes, want %d, the same", p, len(big), want.Len())
		}
	}
	fetch(8080)
	if _, err := get(8081, "/", 10*time.Second); err == nil {
		t.Error("port 8081, which the group does not allow, answered")
	}
	// The control: the group allows 8081 too, and the same guest answers.
	changes := ag.OVS.Changes()
	st.SecurityGroups = web(8080, 8081)
	ag.Set(t, st)
	if ag.OVS.Changes() == changes {
		t.Error("allowing 8081 changed nothing on the bridge")
	}
	fetch(8081)

	// Adopted and settled: several canary ticks later the agent has
	// changed nothing more, and libvirt's tap is still tagged.
	changes = ag.OVS.Changes()
	time.Sleep(testenv.Scale(2 * time.Second))
	if got := ag.OVS.Changes(); got != changes {
		t.Errorf("the agent made %d changes with nothing to do (fighting libvirt?)", got-changes)
	}
	if now := vsctl("get", "Port", tap, "tag"); now != tag {
		t.Errorf("tap %s tag %s, then %s", tap, tag, now)
	}
}
