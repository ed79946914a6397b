package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

// The holes a new operator found (issue 10): each was accepted by the API
// and then refused by every host. Each must now be refused with a 4xx
// naming what is in the way, and change nothing.
func TestContractRefusesWhatHostsCannotApply(t *testing.T) {
	f := newFixture(t, api.Host{Name: "h1", State: api.StateAlive})
	long := strings.Repeat("s", 60)
	for _, c := range []struct{ path, body string }{
		{"/v1/externalnetworks/ext", `{"spec":{"physical_network":"physnet1","cidr":"203.0.113.0/24","gateway":"203.0.113.1"}}`},
		{"/v1/projects/demo", `{}`},
		{"/v1/projects/demo/networks/app", `{}`},
		{"/v1/projects/demo/subnets/s1", `{"spec":{"network":"app","cidr":"10.1.0.0/24"}}`},
		{"/v1/projects/demo/subnets/s2", `{"spec":{"network":"app","cidr":"10.2.0.0/24"}}`},
		{"/v1/projects/demo/subnets/near", `{"spec":{"network":"app","cidr":"203.0.113.128/25"}}`},
		{"/v1/projects/demo/ports/vm", `{"spec":{"network":"app","host":"h1","fixed_ips":[{"subnet":"s1"}]}}`},
		{"/v1/projects/demo/routers/r1", `{"spec":{"external_network":"ext","interfaces":[{"subnet":"s1"},{"subnet":"s2"}]}}`},
		{"/v1/projects/demo/floatingips/f1", `{"spec":{"external_network":"ext","port":"vm"}}`},
		// A 60-character group name passes, and its host ID is valid.
		{"/v1/projects/demo/securitygroups/" + long, `{"spec":{"rules":[{"direction":"ingress","remote_group":"` + long + `"}]}}`},
		// IPv6 remote CIDRs, with the ethertype inferred or matching.
		{"/v1/projects/demo/securitygroups/v6", `{"spec":{"rules":[{"direction":"ingress","remote_cidr":"fd00::/64"},{"direction":"egress","remote_cidr":"2001:db8::/32","ethertype":"IPv6"}]}}`},
	} {
		f.must(f.admin, "PUT", c.path, c.body, 201)
	}
	bad := []struct {
		name, method, path, body, field, says string
		code                                  int
	}{
		{"remove-interface under a floating ip", "PUT", "/v1/projects/demo/routers/r1",
			`{"spec":{"external_network":"ext","interfaces":[{"subnet":"s2"}]}}`, "spec.interfaces", `floating ip "f1"`, 409},
		{"clear-gateway under a floating ip", "PUT", "/v1/projects/demo/routers/r1",
			`{"spec":{"interfaces":[{"subnet":"s1"},{"subnet":"s2"}]}}`, "spec.external_network", `floating ip "f1"`, 409},
		{"interface overlapping the external network", "PUT", "/v1/projects/demo/routers/r1",
			`{"spec":{"external_network":"ext","interfaces":[{"subnet":"s1"},{"subnet":"near"}]}}`, "spec.interfaces[1].subnet", "overlaps external network", 400},
		{"ethertype against the remote cidr", "PUT", "/v1/projects/demo/securitygroups/mixed",
			`{"spec":{"rules":[{"direction":"ingress","remote_cidr":"fd00::/64","ethertype":"IPv4"}]}}`, "spec.rules[0].ethertype", `does not match remote cidr "fd00::/64"`, 400},
		{"unknown ethertype", "PUT", "/v1/projects/demo/securitygroups/mixed",
			`{"spec":{"rules":[{"direction":"ingress","ethertype":"ipx"}]}}`, "spec.rules[0].ethertype", `ethertype "ipx"`, 400},
		{"delete the DHCP port by hand", "DELETE", "/v1/projects/demo/ports/" + api.DHCPPortName("app"), "", "", `network "app"`, 409},
		{"delete a router interface port by hand", "DELETE", "/v1/projects/demo/ports/" + api.RouterPortName("r1", "s2"), "", "", `router "r1"`, 409},
		{"delete a subnet a router uses", "DELETE", "/v1/projects/demo/subnets/s2", "", "", "", 409},
	}
	before := f.store.Epoch()
	for _, c := range bad {
		code, body := f.do(f.admin, c.method, c.path, c.body)
		var eb api.ErrorBody
		json.Unmarshal(body, &eb)
		if code != c.code || eb.Error == nil || eb.Error.Field != c.field || !strings.Contains(eb.Error.Message, c.says) {
			t.Errorf("%s: %d %s, want %d field %q saying %q", c.name, code, body, c.code, c.field, c.says)
		}
	}
	if f.store.Epoch() != before {
		t.Fatalf("refused input moved the epoch %d -> %d", before, f.store.Epoch())
	}
	// Disassociated first, the same changes go through.
	f.must(f.admin, "PUT", "/v1/projects/demo/floatingips/f1", `{"spec":{"external_network":"ext"}}`, 200)
	f.must(f.admin, "PUT", "/v1/projects/demo/routers/r1", `{"spec":{"interfaces":[{"subnet":"s2"}]}}`, 200)
}

// A router on an external network goes only to a host that bridges its
// physical network; with none, the write is refused naming the field.
func TestRouterPlacedOnlyWherePhysnetIsBridged(t *testing.T) {
	f := newFixture(t, api.Host{Name: "h1", State: api.StateAlive}, api.Host{Name: "h2", State: api.StateAlive})
	for host, nets := range map[string][]string{"h1": {}, "h2": {"physnet1"}} {
		b, _ := json.Marshal(api.HostReport{Host: host, Physnets: nets})
		f.must(f.admin, "POST", "/v1/hosts/"+host+"/status", string(b), 204)
	}
	f.must(f.admin, "PUT", "/v1/externalnetworks/ext1", `{"spec":{"physical_network":"physnet1","cidr":"203.0.113.0/24"}}`, 201)
	f.must(f.admin, "PUT", "/v1/externalnetworks/ext2", `{"spec":{"physical_network":"physnet2","cidr":"198.51.100.0/24"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/demo", `{}`, 201)
	for i := 0; i < 4; i++ {
		var pr api.PutResult
		json.Unmarshal(f.must(f.admin, "PUT", fmt.Sprintf("/v1/projects/demo/routers/r%d", i), `{"spec":{"external_network":"ext1"}}`, 201), &pr)
		if h := decodeSpec[api.RouterSpec](pr.Resource).Host; h != "h2" {
			t.Fatalf("router r%d placed on %s, which does not bridge physnet1", i, h)
		}
	}
	before := f.store.Epoch()
	for _, c := range []struct{ body, says string }{
		{`{"spec":{"external_network":"ext2"}}`, "no alive host bridges physical network"},
		{`{"spec":{"external_network":"ext1","host":"h1"}}`, `host "h1" does not map physical network "physnet1"`},
	} {
		code, body := f.do(f.admin, "PUT", "/v1/projects/demo/routers/bad", c.body)
		var eb api.ErrorBody
		json.Unmarshal(body, &eb)
		if code != 409 || eb.Error == nil || eb.Error.Field != "spec.external_network" || !strings.Contains(eb.Error.Message, c.says) {
			t.Errorf("%s: %d %s", c.body, code, body)
		}
	}
	if f.store.Epoch() != before {
		t.Fatal("refused routers moved the epoch")
	}
}

// A port's host, a network's DHCP host and a router's host must be hosts
// the coordinator knows (registered by an agent token, seen by gossip, or
// reporting): anything else is refused naming the field, and nothing
// changes. A host known only by its agent token is accepted.
func TestContractRefusesUnknownHosts(t *testing.T) {
	f := newFixture(t, api.Host{Name: "h1", State: api.StateAlive})
	if _, err := IssueToken(f.store, api.TokenRequest{Name: "h2", Role: api.RoleAgent, Host: "h2"}); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(api.HostReport{Host: "h3"})
	f.must(f.admin, "POST", "/v1/hosts/h3/status", string(b), 204)
	f.must(f.admin, "PUT", "/v1/projects/demo", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/demo/networks/app", `{"spec":{"dhcp_host":"h1"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/demo/subnets/s1", `{"spec":{"network":"app","cidr":"10.1.0.0/24"}}`, 201)
	before := f.store.Epoch()
	for _, c := range []struct{ path, body, field string }{
		{"/v1/projects/demo/ports/p", `{"spec":{"network":"app","host":"nosuch"}}`, "spec.host"},
		{"/v1/projects/demo/networks/other", `{"spec":{"dhcp_host":"nosuch"}}`, "spec.dhcp_host"},
		{"/v1/projects/demo/routers/r", `{"spec":{"host":"nosuch","interfaces":[{"subnet":"s1"}]}}`, "spec.host"},
	} {
		code, body := f.do(f.admin, "PUT", c.path, c.body)
		var eb api.ErrorBody
		json.Unmarshal(body, &eb)
		if code < 400 || code >= 500 || eb.Error == nil || eb.Error.Field != c.field || !strings.Contains(eb.Error.Message, `host "nosuch" is not known`) {
			t.Errorf("PUT %s %s: %d %s, want a 4xx naming %s", c.path, c.body, code, body, c.field)
		}
	}
	if f.store.Epoch() != before {
		t.Fatalf("refused input moved the epoch %d -> %d", before, f.store.Epoch())
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		f.must(f.admin, "PUT", "/v1/projects/demo/ports/on-"+h, `{"spec":{"network":"app","host":"`+h+`"}}`, 201)
	}
}

// An instance's write goes through the contract too, and so does any
// write that would take an instance's NIC away from its host.
func TestContractCoversInstances(t *testing.T) {
	f := computeFixture(t)
	f.must(f.admin, "PUT", "/v1/projects/a/instances/vm", `{"spec":{"flavor":"small","image":"cirros","networks":["net"],"host":"h1"}}`, 201)
	nic := instanceSpec(t, f, "a", "vm").NetworkPorts[0]
	before := f.store.Epoch()
	code, body := f.do(f.admin, "PUT", "/v1/projects/a/ports/"+nic, `{"spec":{"network":"net","host":"h2","owner":"compute"}}`)
	if code != 409 || !strings.Contains(string(body), "instance") || !strings.Contains(string(body), "spec.network_ports[0]") {
		t.Fatalf("moving an instance's NIC to another host: %d %s, want 409 naming the instance's spec.network_ports[0]", code, body)
	}
	if f.store.Epoch() != before {
		t.Fatal("refused write moved the epoch")
	}
}

// A gre network is carried only by hosts on the ovs L2 driver: its DHCP
// goes to one of them, and a port or DHCP host on a linuxbridge host is
// refused naming the field, changing nothing.
func TestGREOnlyOnOVSHosts(t *testing.T) {
	f := newFixture(t, api.Host{Name: "h1", State: api.StateAlive}, api.Host{Name: "h2", State: api.StateAlive})
	for host, drv := range map[string]string{"h1": "linuxbridge", "h2": "ovs"} {
		b, _ := json.Marshal(api.HostReport{Host: host, Network: &api.NetworkHost{L2Driver: drv}})
		f.must(f.admin, "POST", "/v1/hosts/"+host+"/status", string(b), 204)
	}
	f.must(f.admin, "PUT", "/v1/projects/demo", `{}`, 201)
	for i := 0; i < 4; i++ {
		n := fmt.Sprintf("g%d", i)
		f.must(f.admin, "PUT", "/v1/projects/demo/networks/"+n, `{"spec":{"type":"gre"}}`, 201)
		f.must(f.admin, "PUT", "/v1/projects/demo/subnets/s"+n, `{"spec":{"network":"`+n+`","cidr":"10.1.0.0/24"}}`, 201)
		var r api.Resource
		json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/demo/networks/"+n, "", 200), &r)
		if h := decodeSpec[api.NetworkSpec](r).DHCPHost; h != "h2" {
			t.Fatalf("gre network %s's DHCP placed on %s, which runs linuxbridge", n, h)
		}
	}
	f.must(f.admin, "PUT", "/v1/projects/demo/ports/ok", `{"spec":{"network":"g0","host":"h2"}}`, 201)
	// A router with a leg on a gre network is placed on an ovs host.
	for i := 0; i < 4; i++ {
		var pr api.PutResult
		json.Unmarshal(f.must(f.admin, "PUT", fmt.Sprintf("/v1/projects/demo/routers/r%d", i),
			fmt.Sprintf(`{"spec":{"interfaces":[{"subnet":"sg%d"}]}}`, i), 201), &pr)
		if h := decodeSpec[api.RouterSpec](pr.Resource).Host; h != "h2" {
			t.Fatalf("router r%d with a leg on a gre network placed on %s, which runs linuxbridge", i, h)
		}
	}
	f.must(f.admin, "PUT", "/v1/projects/demo/networks/vx", `{"spec":{"dhcp_host":"h1"}}`, 201)
	before := f.store.Epoch()
	for _, c := range []struct{ path, body, field string }{
		{"/v1/projects/demo/ports/p", `{"spec":{"network":"g0","host":"h1"}}`, "spec.host"},
		{"/v1/projects/demo/networks/bad", `{"spec":{"type":"gre","dhcp_host":"h1"}}`, "spec.dhcp_host"},
	} {
		code, body := f.do(f.admin, "PUT", c.path, c.body)
		var eb api.ErrorBody
		json.Unmarshal(body, &eb)
		if code < 400 || code >= 500 || eb.Error == nil || eb.Error.Field != c.field || !strings.Contains(eb.Error.Message, "linuxbridge L2 driver") {
			t.Errorf("PUT %s %s: %d %s, want a 4xx naming %s", c.path, c.body, code, body, c.field)
		}
	}
	if f.store.Epoch() != before {
		t.Fatalf("refused input moved the epoch %d -> %d", before, f.store.Epoch())
	}
}
