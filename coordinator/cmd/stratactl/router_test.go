package main

import (
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

// routedCLI is a project p with network app, subnets s1 and s2 on it, an
// external network ext and a port vm on s1.
func routedCLI(t *testing.T) *cli {
	c := newCLI(t)
	c.steps([]step{
		{args: "externalnetworks create ext --physical-network physnet1 --cidr 203.0.113.0/24 --gateway 203.0.113.1 --pool 203.0.113.10-203.0.113.20"},
		{args: "networks create -p p app"},
		{args: "networks create -p p db"},
		{args: "subnets create -p p s1 --network app --cidr 10.1.0.0/24"},
		{args: "subnets create -p p s2 --network db --cidr 10.2.0.0/24"},
		{args: "ports create -p p vm --network app --ip 10.1.0.50"},
	})
	return c
}

func TestExternalNetworksAndRouters(t *testing.T) {
	c := routedCLI(t)
	c.steps([]step{
		{args: "extnet create bad --physical-network physnet1 --cidr 198.51.100.0/33", field: "spec.cidr"},
		{args: "externalnetworks list", want: []string{"PHYSICAL_NETWORK", "ext", "physnet1", "203.0.113.0/24", "203.0.113.1", "203.0.113.10-203.0.113.20"}},
		{args: "externalnetwork show ext", want: []string{"name:", "ext", "physical_network:", "physnet1"}},
		{args: "routers create -p p r1 --external-network ext --subnet s1 --route 10.9.0.0/16=10.1.0.254"},
		{args: "routers create -p p r2 --subnet s1", err: "already attached"},
		{args: "routers create -p p r3 --route 10.9.0.0/16=192.0.2.1", field: "spec.routes[0].nexthop"},
		{args: "routers add-interface -p p r1 s2", want: []string{"NAME", "RESULT", "r1", "updated"}},
		// Re-running it is idempotent.
		{args: "routers add-interface -p p r1 s2", want: []string{"r1", "unchanged"}},
		{args: "routers add-interface -p p r1 nope", field: "spec.interfaces[2].subnet"},
		{args: "routers list -p p", want: []string{"EXTERNAL_NETWORK", "EXTERNAL_IP", "SNAT", "HOST", "INTERFACES",
			"r1", "ext", "203.0.113.10", "true", "h1", "s1,s2"}},
		{args: "router show -p p r1", want: []string{"host:", "h1", "external_ip:", "203.0.113.10", "interfaces:", "s1,s2", "routes:", "10.9.0.0/16=10.1.0.254"}},
		{args: "routers remove-interface -p p r1 s2", want: []string{"r1", "updated"}},
		{args: "routers remove-interface -p p r1 s2", err: `no interface on subnet "s2"`},
	})
	var r api.Resource
	c.json(&r, "routers", "show", "-p", "p", "r1")
	if rs := spec[api.RouterSpec](t, r); len(rs.Interfaces) != 1 || rs.Interfaces[0].Subnet != "s1" || rs.ExternalNetwork != "ext" {
		t.Fatalf("router after remove-interface: %s", r.Spec)
	}
	var ports []api.Resource
	c.json(&ports, "ports", "list", "-p", "p")
	if _, ok := byName(ports, api.RouterPortName("r1", "s2")); ok {
		t.Fatal("the router's port on s2 outlived its interface")
	}
	if _, ok := byName(ports, api.RouterPortName("r1", "s1")); !ok {
		t.Fatal("no router port on s1")
	}

	c.steps([]step{
		{args: "routers clear-gateway -p p r1", want: []string{"r1", "updated"}},
		{args: "routers clear-gateway -p p r1", want: []string{"r1", "unchanged"}},
		{args: "routers set-gateway -p p r1 nope", field: "spec.external_network"},
		{args: "routers set-gateway -p p r1 ext --external-ip 203.0.113.15", want: []string{"r1", "updated"}},
		{args: "routers set-gateway -p p r1 ext", want: []string{"r1", "unchanged"}},
		{args: "routers show -p p r1", want: []string{"external_network:", "ext", "external_ip:", "203.0.113.15"}},
		{args: "routers delete -p p r1", want: []string{"r1", "true"}},
		{args: "externalnetworks delete ext"},
	})
}

func TestFloatingIPs(t *testing.T) {
	c := routedCLI(t)
	c.steps([]step{
		{args: "ports create -p p lonely --network db"},
		{args: "routers create -p p r1 --external-network ext --subnet s1"},
		{args: "floatingips create -p p f1 --external-network ext"},
		{args: "floatingips create -p p f2 --external-network ext --ip 198.51.100.7", field: "spec.ip"},
		{args: "floatingips list -p p", want: []string{"EXTERNAL_NETWORK", "IP", "PORT", "ROUTER", "f1", "ext", "203.0.113.", "-", "-"}},
		{args: "floatingips associate -p p f1 vm", want: []string{"f1", "updated"}},
		{args: "floatingips associate -p p f1 vm", want: []string{"f1", "unchanged"}},
		{args: "fip show -p p f1", want: []string{"port:", "vm", "router:", "r1"}},
		{args: "ports delete -p p vm", err: "disassociate it first"},
		{args: "floatingips associate -p p f1 lonely", field: "spec.port"},
		{args: "floatingips associate -p p nope vm", err: "404"},
	})
	var r api.Resource
	c.json(&r, "floatingips", "show", "-p", "p", "f1")
	fs := spec[api.FloatingIPSpec](t, r)
	if fs.Port != "vm" || fs.Router != "r1" || fs.IP == "" {
		t.Fatalf("associated floating ip %s", r.Spec)
	}
	c.steps([]step{
		{args: "floatingips disassociate -p p f1", want: []string{"f1", "updated"}},
		{args: "floatingips disassociate -p p f1", want: []string{"f1", "unchanged"}},
	})
	c.json(&r, "floatingips", "show", "-p", "p", "f1")
	if after := spec[api.FloatingIPSpec](t, r); after.Port != "" || after.Router != "" || after.IP != fs.IP {
		t.Fatalf("disassociated floating ip %s (was %+v)", r.Spec, fs)
	}
	c.steps([]step{
		{args: "floatingips create -p p f2 --external-network ext --port vm"},
		{args: "floatingips list -p p", want: []string{"f1", "-", "-", "f2", "vm", "r1"}},
		{args: "ports delete -p p vm", err: "disassociate it first"},
		{args: "floatingips delete -p p f2"},
		{args: "ports delete -p p vm"},
	})
}
