package api

import (
	"encoding/json"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

// TestDrainMovesRoutersAndDHCP: draining a host with move_network places
// its router and its networks' DHCP on another host, with the same
// external address, interface ports and DHCP port; a plain drain moves
// nothing.
func TestDrainMovesRoutersAndDHCP(t *testing.T) {
	f := newFixture(t, api.Host{Name: "h1", State: api.StateAlive}, api.Host{Name: "h2", State: api.StateAlive})
	for _, c := range []struct{ path, body string }{
		{"/v1/externalnetworks/ext", `{"spec":{"physical_network":"physnet1","cidr":"203.0.113.0/24","gateway":"203.0.113.1"}}`},
		{"/v1/projects/p", `{}`},
		{"/v1/projects/p/networks/n", `{"spec":{"dhcp_host":"h1"}}`},
		{"/v1/projects/p/subnets/s", `{"spec":{"network":"n","cidr":"10.0.0.0/24"}}`},
		{"/v1/projects/p/routers/r", `{"spec":{"external_network":"ext","host":"h1","interfaces":[{"subnet":"s"}]}}`},
	} {
		code, b := f.do(f.admin, "PUT", c.path, c.body)
		if code != 200 && code != 201 {
			t.Fatalf("PUT %s: %d %s", c.path, code, b)
		}
	}
	get := func(path string, v any) {
		var r api.Resource
		json.Unmarshal(f.must(f.admin, "GET", path, "", 200), &r)
		json.Unmarshal(r.Spec, v)
	}
	var before, after api.RouterSpec
	var dport, dportAfter api.PortSpec
	get("/v1/projects/p/routers/r", &before)
	get("/v1/projects/p/ports/"+api.DHCPPortName("n"), &dport)

	f.must(f.admin, "POST", "/v1/hosts/h1/drain", `{"reason":"maintenance"}`, 200)
	get("/v1/projects/p/routers/r", &after)
	if after.Host != "h1" {
		t.Fatalf("a plain drain moved the router to %s", after.Host)
	}
	f.must(f.admin, "POST", "/v1/hosts/h1/drain", `{"move_network":true}`, 200)
	get("/v1/projects/p/routers/r", &after)
	get("/v1/projects/p/ports/"+api.DHCPPortName("n"), &dportAfter)
	var n api.NetworkSpec
	get("/v1/projects/p/networks/n", &n)
	var rport api.PortSpec
	get("/v1/projects/p/ports/"+api.RouterPortName("r", "s"), &rport)
	if after.Host != "h2" || after.ExternalIP != before.ExternalIP || rport.Host != "h2" {
		t.Fatalf("router after the drain: host %s (port %s), external %s (was %s)", after.Host, rport.Host, after.ExternalIP, before.ExternalIP)
	}
	if n.DHCPHost != "h2" || dportAfter.Host != "h2" || dportAfter.MAC != dport.MAC || dportAfter.FixedIPs[0].IP != dport.FixedIPs[0].IP {
		t.Fatalf("DHCP after the drain: network on %s, port %+v (was %+v)", n.DHCPHost, dportAfter, dport)
	}
	f.must(f.admin, "POST", "/v1/hosts/h1/drain", `{"move_network":"yes"}`, 400)
}
