package contract

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

func res(kind, project, name string, spec any) api.Resource {
	b, _ := json.Marshal(spec)
	return api.Resource{Kind: kind, Project: project, Name: name, Spec: b}
}

// good is one project with a router, a floating IP and a DHCP subnet, as
// the coordinator commits it.
func good() []api.Resource {
	return []api.Resource{
		res("externalnetwork", "", "ext", api.ExternalNetworkSpec{PhysicalNetwork: "physnet1", CIDR: "203.0.113.0/24", Gateway: "203.0.113.1"}),
		res("network", "p", "n", api.NetworkSpec{SegmentationID: 1000, MTU: 1450}),
		res("subnet", "p", "s", api.SubnetSpec{Network: "n", CIDR: "10.1.0.0/24", Gateway: "10.1.0.1"}),
		res("port", "p", api.DHCPPortName("n"), api.PortSpec{Network: "n", MAC: "02:00:00:00:00:01", Host: "h1", Owner: api.PortOwnerDHCP,
			FixedIPs: []api.FixedIP{{Subnet: "s", IP: "10.1.0.2"}}}),
		res("port", "p", "vm", api.PortSpec{Network: "n", MAC: "02:00:00:00:00:02", Host: "h1", FixedIPs: []api.FixedIP{{Subnet: "s", IP: "10.1.0.3"}}}),
		res("port", "p", api.RouterPortName("r", "s"), api.PortSpec{Network: "n", MAC: "02:00:00:00:00:03", Host: "h1",
			Owner: api.PortOwnerRouterInterface, FixedIPs: []api.FixedIP{{Subnet: "s", IP: "10.1.0.1"}}}),
		res("router", "p", "r", api.RouterSpec{ExternalNetwork: "ext", ExternalIP: "203.0.113.10", Host: "h1", Interfaces: []api.RouterInterface{{Subnet: "s"}}}),
		res("floatingip", "p", "f", api.FloatingIPSpec{ExternalNetwork: "ext", IP: "203.0.113.11", Port: "vm", Router: "r"}),
		res("securitygroup", "p", strings.Repeat("g", 63), api.SecurityGroupSpec{Rules: []api.SecurityGroupRuleSpec{{Direction: "ingress", RemoteGroup: strings.Repeat("g", 63)}}}),
	}
}

func replace(rs []api.Resource, r api.Resource) []api.Resource {
	out := []api.Resource{}
	for _, o := range rs {
		if o.Key() != r.Key() {
			out = append(out, o)
		}
	}
	if r.Spec != nil {
		out = append(out, r)
	}
	return out
}

func TestCheck(t *testing.T) {
	if vs := Check(good(), nil); len(vs) != 0 {
		t.Fatalf("a state hosts apply has violations: %v", vs)
	}
	cases := []struct {
		name  string
		state []api.Resource
		key   string
		field string
	}{
		{"router loses its gateway under a floating ip",
			replace(good(), res("router", "p", "r", api.RouterSpec{Host: "h1", Interfaces: []api.RouterInterface{{Subnet: "s"}}})),
			"floatingip/p/f", "spec.router"},
		{"router loses the interface of a floating ip's port",
			replace(replace(good(), res("router", "p", "r", api.RouterSpec{ExternalNetwork: "ext", ExternalIP: "203.0.113.10", Host: "h1"})),
				api.Resource{Kind: "port", Project: "p", Name: api.RouterPortName("r", "s")}),
			"floatingip/p/f", "spec.port"},
		{"DHCP port deleted under a DHCP subnet",
			replace(good(), api.Resource{Kind: "port", Project: "p", Name: api.DHCPPortName("n")}),
			"subnet/p/s", "spec.dhcp"},
		{"router interface port deleted",
			replace(good(), api.Resource{Kind: "port", Project: "p", Name: api.RouterPortName("r", "s")}),
			"router/p/r", "spec.interfaces[0].subnet"},
		{"interface overlapping the external network",
			replace(good(), res("subnet", "p", "s", api.SubnetSpec{Network: "n", CIDR: "203.0.113.0/24", Gateway: "203.0.113.1", DHCP: new(bool)})),
			"router/p/r", "spec"},
		{"vni out of range",
			replace(good(), res("network", "p", "n", api.NetworkSpec{SegmentationID: 1 << 24})),
			"network/p/n", "spec.segmentation_id"},
	}
	for _, c := range cases {
		vs := Check(c.state, nil)
		found := false
		for _, v := range vs {
			found = found || (v.Key.String() == c.key && v.Field == c.field)
		}
		if !found {
			t.Errorf("%s: want a violation of %s %s, got %v", c.name, c.key, c.field, vs)
		}
	}
	facts := &Facts{Physnets: map[string][]string{"h1": {"physnet2"}}}
	if vs := Check(good(), facts); len(vs) != 1 || vs[0].Field != "spec.external_network" {
		t.Errorf("router on a host without the physnet: %v", vs)
	}
}

// TestGREOnlyOnOVSHosts: a gre network's ports and DHCP host must be on
// hosts that run the ovs L2 driver; hosts whose driver is not known pass.
func TestGREOnlyOnOVSHosts(t *testing.T) {
	gre := replace(good(), res("network", "p", "n", api.NetworkSpec{Type: "gre", SegmentationID: 1000, MTU: 1450, DHCPHost: "h1"}))
	if vs := Check(gre, &Facts{L2Drivers: map[string]string{"h1": "ovs"}}); len(vs) != 0 {
		t.Errorf("gre on an ovs host: %v", vs)
	}
	if vs := Check(gre, &Facts{L2Drivers: map[string]string{"h2": "linuxbridge"}}); len(vs) != 0 {
		t.Errorf("gre on a host whose driver is not known: %v", vs)
	}
	if vs := Check(good(), &Facts{L2Drivers: map[string]string{"h1": "linuxbridge"}}); len(vs) != 0 {
		t.Errorf("vxlan on a linuxbridge host: %v", vs)
	}
	vs := Check(gre, &Facts{L2Drivers: map[string]string{"h1": "linuxbridge"}})
	want := map[string]bool{"network/p/n spec.dhcp_host": true, "port/p/vm spec.host": true,
		"port/p/" + api.DHCPPortName("n") + " spec.host": true, "port/p/" + api.RouterPortName("r", "s") + " spec.host": true}
	for _, v := range vs {
		k := v.Key.String() + " " + v.Field
		if !want[k] {
			t.Errorf("unexpected violation %v", v)
		}
		if !strings.Contains(v.Message, "linuxbridge") {
			t.Errorf("violation does not name the host's driver: %v", v)
		}
		delete(want, k)
	}
	for k := range want {
		t.Errorf("gre on a linuxbridge host: no violation %s (got %v)", k, vs)
	}
}

// Names hosts derive are checked with the drivers' own functions: a
// physical network whose bridge name would not fit IFNAMSIZ is refused
// naming the field; an over-long security group name cannot get that far
// (its ID is hashed), so its names fit.
func TestContractChecksDerivedNames(t *testing.T) {
	rs := replace(good(), res("externalnetwork", "", "ext", api.ExternalNetworkSpec{PhysicalNetwork: "physnet-number-1", CIDR: "203.0.113.0/24", Gateway: "203.0.113.1"}))
	var found bool
	for _, v := range Check(rs, nil) {
		if v.Key.Kind == "externalnetwork" && v.Field == "spec.physical_network" && strings.Contains(v.Message, "sbe-physnet-number-1") {
			found = true
		}
	}
	if !found {
		t.Fatalf("a 20-byte provider bridge name passed: %v", Check(rs, nil))
	}
	if v := Check(good(), nil); len(v) != 0 {
		t.Fatalf("good state: %v", v)
	}
}
