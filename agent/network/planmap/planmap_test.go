package planmap

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/api"
)

func res(kind, project, name string, spec any) api.Resource {
	b, _ := json.Marshal(spec)
	return api.Resource{Kind: kind, Project: project, Name: name, Spec: b}
}

func TestHostStateCarriesOnlyNetworksWithLocalPorts(t *testing.T) {
	snap := &plan.Snapshot{Epoch: 7, Resources: []api.Resource{
		res("network", "a", "net1", api.NetworkSpec{SegmentationID: 1000, MTU: 1450}),
		res("network", "b", "net1", api.NetworkSpec{SegmentationID: 1001, MTU: 1450}),
		res("network", "b", "idle", api.NetworkSpec{SegmentationID: 1002, MTU: 1450}),
		res("subnet", "a", "s", api.SubnetSpec{Network: "net1", CIDR: "10.1.1.0/24", Gateway: "10.1.1.1", AllocationPools: []api.IPRange{{Start: "10.1.1.2", End: "10.1.1.254"}}}),
		res("subnet", "b", "s", api.SubnetSpec{Network: "net1", CIDR: "10.1.1.0/24", Gateway: "none"}),
		res("port", "a", "dhcp-net1", api.PortSpec{Network: "net1", MAC: "02:5a:00:00:00:01", Host: "h2", Owner: api.PortOwnerDHCP, FixedIPs: []api.FixedIP{{Subnet: "s", IP: "10.1.1.2"}}}),
		res("port", "a", "web", api.PortSpec{Network: "net1", MAC: "02:5a:00:00:00:02", Host: "h1", Owner: api.PortOwnerEndpoint, DNSName: "web", FixedIPs: []api.FixedIP{{Subnet: "s", IP: "10.1.1.3"}}}),
		res("port", "a", "unbound", api.PortSpec{Network: "net1", MAC: "02:5a:00:00:00:03"}),
		res("port", "b", "db", api.PortSpec{Network: "net1", MAC: "02:5a:00:00:00:04", Host: "h3", FixedIPs: []api.FixedIP{{Subnet: "s", IP: "10.1.1.3"}}}),
	}}
	self := Self{Host: "h1", VTEP: netip.MustParseAddr("172.31.250.11")}
	remote := map[string]netip.Addr{"h1": self.VTEP, "h2": netip.MustParseAddr("172.31.250.12")}
	st, probs := HostState(plan.Decode(snap), self, remote)
	if len(probs) > 0 {
		t.Fatal(probs.Err())
	}
	if err := st.Validate(); err != nil {
		t.Fatalf("built state does not validate: %v", err)
	}
	if len(st.Networks) != 1 || st.Networks[0].ID != "n1000" || st.Networks[0].VNI != 1000 || len(st.Networks[0].Subnets) != 1 {
		t.Fatalf("networks %+v", st.Networks)
	}
	sub := st.Networks[0].Subnets[0]
	if sub.Gateway != netip.MustParseAddr("10.1.1.1") || !sub.DHCP || len(sub.Pools) != 1 {
		t.Fatalf("subnet %+v", sub)
	}
	if len(st.Ports) != 2 || st.Ports[0].ID != "a.dhcp-net1" || st.Ports[0].Owner != network.OwnerDHCP || st.Ports[1].Host != "h1" {
		t.Fatalf("ports %+v", st.Ports)
	}
	if len(st.LocalEndpoints) != 1 || st.LocalEndpoints[0].PortID != "a.web" || !st.LocalEndpoints[0].DHCP {
		t.Fatalf("endpoints %+v", st.LocalEndpoints)
	}
	if _, self := st.RemoteVTEPs["h1"]; self || len(st.RemoteVTEPs) != 1 {
		t.Fatalf("remote vteps %+v", st.RemoteVTEPs)
	}
	// h3 has only project b's port: it gets b's network and nothing of a's.
	st3, _ := HostState(plan.Decode(snap), Self{Host: "h3", VTEP: netip.MustParseAddr("172.31.250.13")}, remote)
	if len(st3.Networks) != 1 || st3.Networks[0].VNI != 1001 || !st3.Networks[0].Subnets[0].DHCP || st3.Networks[0].Subnets[0].Gateway.IsValid() {
		t.Fatalf("h3 networks %+v", st3.Networks)
	}
}

func TestPortIDStaysShort(t *testing.T) {
	long := PortID("p", string(make([]byte, 70)))
	if len(long) > 63 || PortID("a", "web") != "a.web" {
		t.Fatalf("port ids %q", long)
	}
}

// TestHostStateIncomingPortIsLocal: while instance vm live-migrates from
// h1 to h2 (its port still bound to h1), h2 maps the port as its own, with
// h1 as where it comes from, so that its filter is in force before the
// guest arrives; h1 keeps it as its own; a third host still sees it on h1
// until the coordinator rebinds it.
func TestHostStateIncomingPortIsLocal(t *testing.T) {
	snap := &plan.Snapshot{Epoch: 9, Resources: []api.Resource{
		res("network", "a", "net", api.NetworkSpec{SegmentationID: 1000, MTU: 1450}),
		res("subnet", "a", "s", api.SubnetSpec{Network: "net", CIDR: "10.1.1.0/24"}),
		res("port", "a", "vm-p", api.PortSpec{Network: "net", MAC: "02:5a:00:00:00:07", Host: "h1", FixedIPs: []api.FixedIP{{Subnet: "s", IP: "10.1.1.7"}}}),
		res("port", "a", "ep", api.PortSpec{Network: "net", MAC: "02:5a:00:00:00:08", Host: "h3", Owner: api.PortOwnerEndpoint, FixedIPs: []api.FixedIP{{Subnet: "s", IP: "10.1.1.8"}}}),
		res("instance", "a", "vm", api.InstanceSpec{Flavor: "f", Host: "h2", NetworkPorts: []string{"vm-p"}, Migration: &api.InstanceMigration{Source: "h1", Live: true}}),
	}}
	remote := map[string]netip.Addr{"h1": netip.MustParseAddr("172.31.250.11"), "h2": netip.MustParseAddr("172.31.250.12"), "h3": netip.MustParseAddr("172.31.250.13")}
	port := func(host string) network.Port {
		t.Helper()
		st, probs := HostState(plan.Decode(snap), Self{Host: host, VTEP: remote[host]}, remote)
		if len(probs) > 0 {
			t.Fatal(probs.Err())
		}
		for _, p := range st.Ports {
			if p.ID == "a.vm-p" {
				return p
			}
		}
		t.Fatalf("%s: no port a.vm-p in %+v", host, st.Ports)
		return network.Port{}
	}
	if p := port("h2"); p.Host != "h2" || p.From != "h1" || len(p.SecurityGroups) == 0 {
		t.Fatalf("on the destination: %+v; want it local, from h1, with its groups", p)
	}
	if p := port("h1"); p.Host != "h1" || p.From != "" {
		t.Fatalf("on the source: %+v; want it local", p)
	}
	if p := port("h3"); p.Host != "h1" || p.From != "" {
		t.Fatalf("on a third host: %+v; want it on h1", p)
	}
	// A cold move brings nothing ahead: the guest starts once it is bound.
	snap.Resources[4] = res("instance", "a", "vm", api.InstanceSpec{Flavor: "f", Host: "h2", NetworkPorts: []string{"vm-p"}, Migration: &api.InstanceMigration{Source: "h1"}})
	st, _ := HostState(plan.Decode(snap), Self{Host: "h2", VTEP: remote["h2"]}, remote)
	if len(st.Ports) != 0 {
		t.Fatalf("a cold move's destination maps %+v", st.Ports)
	}
}
