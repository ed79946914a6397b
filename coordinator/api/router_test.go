package api

import (
	"encoding/json"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

func TestRoutersFloatingIPsFirewallsSecurityGroups(t *testing.T) {
	f := newFixture(t, api.Host{Name: "h1", State: api.StateAlive})
	for _, c := range []struct{ path, body string }{
		{"/v1/externalnetworks/ext", `{"spec":{"physical_network":"physnet1","cidr":"203.0.113.0/24","gateway":"203.0.113.1","allocation_pools":[{"start":"203.0.113.10","end":"203.0.113.20"}]}}`},
		{"/v1/projects/p", `{}`},
		{"/v1/projects/p/networks/n1", `{}`},
		{"/v1/projects/p/networks/n2", `{}`},
		{"/v1/projects/p/subnets/s1", `{"spec":{"network":"n1","cidr":"10.1.0.0/24"}}`},
		{"/v1/projects/p/subnets/s2", `{"spec":{"network":"n2","cidr":"10.2.0.0/24"}}`},
		{"/v1/projects/p/subnets/s3", `{"spec":{"network":"n2","cidr":"10.1.0.0/25"}}`},
		{"/v1/projects/p/ports/vm", `{"spec":{"network":"n1","host":"h1"}}`},
		{"/v1/projects/p/ports/lonely", `{"spec":{"network":"n2","fixed_ips":[{"subnet":"s3"}]}}`},
		{"/v1/projects/p/securitygroups/web", `{"spec":{"rules":[{"direction":"ingress","protocol":"tcp","ports":"80"}]}}`},
		{"/v1/projects/p/routers/r1", `{"spec":{"external_network":"ext","interfaces":[{"subnet":"s1"},{"subnet":"s2"}]}}`},
		{"/v1/projects/p/floatingips/f1", `{"spec":{"external_network":"ext","port":"vm"}}`},
	} {
		f.must(f.admin, "PUT", c.path, c.body, 201)
	}
	var r api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/p/routers/r1", "", 200), &r)
	rs := decodeSpec[api.RouterSpec](r)
	if rs.Host != "h1" || rs.ExternalIP != "203.0.113.10" || !rs.SNATEnabled() {
		t.Fatalf("router %+v", rs)
	}
	rif := portSpec(t, f, "p", api.RouterPortName("r1", "s1"))
	if rif.Owner != api.PortOwnerRouterInterface || rif.FixedIPs[0].IP != "10.1.0.1" || rif.Host != "h1" {
		t.Fatalf("router interface port %+v", rif)
	}
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/p/floatingips/f1", "", 200), &r)
	if fs := decodeSpec[api.FloatingIPSpec](r); fs.IP != "203.0.113.11" || fs.Router != "r1" {
		t.Fatalf("floating ip %+v", fs)
	}

	bad := []struct {
		name, path, body, field string
		code                    int
	}{
		{"subnet on another router", "/v1/projects/p/routers/r2", `{"spec":{"interfaces":[{"subnet":"s1"}]}}`, "", 409},
		{"overlapping interfaces in one router", "/v1/projects/p/routers/r1", `{"spec":{"external_network":"ext","interfaces":[{"subnet":"s1"},{"subnet":"s3"}]}}`, "spec.interfaces[1].subnet", 400},
		{"invalid external cidr", "/v1/externalnetworks/bad", `{"spec":{"physical_network":"physnet1","cidr":"203.0.113.0/33"}}`, "spec.cidr", 400},
		{"firewall invalid cidr", "/v1/projects/p/firewallgroups/fw", `{"spec":{"router":"r1","ingress":{"rules":[{"source":"10.0.0.0/8x","action":"allow"}]}}}`, "spec.ingress.rules[0]", 400},
		{"firewall port 0", "/v1/projects/p/firewallgroups/fw", `{"spec":{"router":"r1","ingress":{"rules":[{"protocol":"tcp","destination_ports":"0","action":"deny"}]}}}`, "spec.ingress.rules[0].destination_ports", 400},
		{"firewall port above 65535", "/v1/projects/p/firewallgroups/fw", `{"spec":{"router":"r1","egress":{"rules":[{"protocol":"udp","source_ports":"1:70000","action":"deny"}]}}}`, "spec.egress.rules[0].source_ports", 400},
		{"firewall bad action", "/v1/projects/p/firewallgroups/fw", `{"spec":{"router":"r1","egress":{"rules":[{"action":"maybe"}]}}}`, "spec.egress.rules[0]", 400},
		{"security group port 0", "/v1/projects/p/securitygroups/sg", `{"spec":{"rules":[{"direction":"ingress","protocol":"tcp","ports":"0"}]}}`, "spec.rules[0].ports", 400},
		{"security group unknown remote", "/v1/projects/p/securitygroups/sg", `{"spec":{"rules":[{"direction":"ingress","remote_group":"nope"}]}}`, "spec.rules[0].remote_group", 400},
		{"floating ip taken", "/v1/projects/p/floatingips/f2", `{"spec":{"external_network":"ext","ip":"203.0.113.11"}}`, "spec.ip", 409},
		{"floating ip is router gateway", "/v1/projects/p/floatingips/f2", `{"spec":{"external_network":"ext","ip":"203.0.113.10"}}`, "spec.ip", 409},
		{"floating ip outside", "/v1/projects/p/floatingips/f2", `{"spec":{"external_network":"ext","ip":"198.51.100.7"}}`, "spec.ip", 400},
		{"port with second floating ip", "/v1/projects/p/floatingips/f2", `{"spec":{"external_network":"ext","port":"vm"}}`, "", 409},
		{"floating ip port without router", "/v1/projects/p/floatingips/f2", `{"spec":{"external_network":"ext","port":"lonely"}}`, "spec.port", 400},
		{"port unknown security group", "/v1/projects/p/ports/vm2", `{"spec":{"network":"n1","security_groups":["nope"]}}`, "spec.security_groups[0]", 400},
		{"user makes a router port", "/v1/projects/p/ports/vm3", `{"spec":{"network":"n1","owner":"network:router_interface"}}`, "spec.owner", 403},
	}
	before := f.store.Epoch()
	for _, c := range bad {
		code, body := f.do(f.admin, "PUT", c.path, c.body)
		var eb api.ErrorBody
		json.Unmarshal(body, &eb)
		if code != c.code || eb.Error == nil || eb.Error.Field != c.field {
			t.Errorf("%s: %d %s, want %d field %q", c.name, code, body, c.code, c.field)
		}
	}
	if f.store.Epoch() != before {
		t.Fatalf("refused input moved the epoch %d -> %d", before, f.store.Epoch())
	}

	// Dependencies are kept: no router delete under a floating IP, no
	// port delete under a floating IP, no group delete while in use.
	f.must(f.admin, "DELETE", "/v1/projects/p/routers/r1", "", 409)
	f.must(f.admin, "DELETE", "/v1/projects/p/ports/vm", "", 409)
	f.must(f.admin, "PUT", "/v1/projects/p/ports/vm", `{"spec":{"network":"n1","host":"h1","security_groups":["web"]}}`, 200)
	f.must(f.admin, "DELETE", "/v1/projects/p/securitygroups/web", "", 409)
	f.must(f.admin, "DELETE", "/v1/externalnetworks/ext", "", 409)
	// Disassociate, then the router (and its interface ports) can go.
	f.must(f.admin, "PUT", "/v1/projects/p/floatingips/f1", `{"spec":{"external_network":"ext"}}`, 200)
	f.must(f.admin, "DELETE", "/v1/projects/p/routers/r1", "", 200)
	f.must(f.admin, "GET", "/v1/projects/p/ports/"+api.RouterPortName("r1", "s1"), "", 404)
}
