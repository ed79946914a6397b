package api

import (
	"encoding/json"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

// TestAddressesCanonicalAndZonesRefused: every address and CIDR a spec
// carries is stored in canonical form, so two spellings of one address
// are one address (a duplicate is caught); an address with an IPv6 zone
// is refused naming the field, and nothing changes.
func TestAddressesCanonicalAndZonesRefused(t *testing.T) {
	f := newFixture(t, api.Host{Name: "h1", State: api.StateAlive})
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/networks/n", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/subnets/s6", `{"spec":{"network":"n","cidr":"2001:DB8:0:0::/64","gateway":"2001:0db8::1",
		"allocation_pools":[{"start":"2001:DB8::10","end":"2001:db8:0::FF"}],"dns_servers":["2001:DB8::53","::ffff:192.0.2.53"],
		"host_routes":[{"destination":"2001:DB8:1::/48","nexthop":"2001:db8::00fe"}]}}`, 201)
	var r api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/a/subnets/s6", "", 200), &r)
	s := decodeSpec[api.SubnetSpec](r)
	if s.CIDR != "2001:db8::/64" || s.Gateway != "2001:db8::1" || s.AllocationPools[0] != (api.IPRange{Start: "2001:db8::10", End: "2001:db8::ff"}) ||
		s.DNSServers[0] != "2001:db8::53" || s.DNSServers[1] != "192.0.2.53" ||
		s.HostRoutes[0] != (api.HostRoute{Destination: "2001:db8:1::/48", NextHop: "2001:db8::fe"}) {
		t.Fatalf("subnet not stored canonically: %+v", s)
	}
	// Re-applying another spelling of the same CIDR is no change of CIDR.
	f.must(f.admin, "PUT", "/v1/projects/a/subnets/s6", `{"spec":{"network":"n","cidr":"2001:db8::/64","gateway":"2001:db8::1",
		"allocation_pools":[{"start":"2001:db8::10","end":"2001:db8::ff"}]}}`, 200)
	f.must(f.admin, "PUT", "/v1/projects/a/ports/p1", `{"spec":{"network":"n","fixed_ips":[{"ip":"2001:DB8::20"}]}}`, 201)
	if p := portSpec(t, f, "a", "p1"); p.FixedIPs[0].IP != "2001:db8::20" {
		t.Fatalf("port address not canonical: %+v", p.FixedIPs)
	}

	// Allowed address pairs: stored canonically, refused when malformed
	// or on a port without port security.
	f.must(f.admin, "PUT", "/v1/projects/a/ports/vrrp", `{"spec":{"network":"n","allowed_address_pairs":[{"ip_address":"2001:DB8::100"},{"ip_address":"2001:db8:5::/64","mac_address":"02:AA:00:00:00:01"}]}}`, 201)
	if p := portSpec(t, f, "a", "vrrp"); len(p.AllowedAddressPairs) != 2 ||
		p.AllowedAddressPairs[0] != (api.AddressPair{IPAddress: "2001:db8::100"}) ||
		p.AllowedAddressPairs[1] != (api.AddressPair{IPAddress: "2001:db8:5::/64", MACAddress: "02:aa:00:00:00:01"}) {
		t.Fatalf("address pairs not canonical: %+v", p.AllowedAddressPairs)
	}

	before := f.store.Epoch()
	for _, c := range []struct{ name, path, body, field string }{
		{"same address, other spelling", "/v1/projects/a/ports/p2", `{"spec":{"network":"n","fixed_ips":[{"ip":"2001:db8:0:0:0:0:0:20"}]}}`, "spec.fixed_ips[0].ip"},
		{"zone in a dns server", "/v1/projects/a/subnets/s7", `{"spec":{"network":"n","cidr":"2001:db8:7::/64","dns_servers":["fe80::1%eth0\nserver=/x/1.2.3.4"]}}`, "spec.dns_servers[0]"},
		{"zone in a gateway", "/v1/projects/a/subnets/s7", `{"spec":{"network":"n","cidr":"2001:db8:7::/64","gateway":"2001:db8:7::1%lo"}}`, "spec.gateway"},
		{"zone in a fixed ip", "/v1/projects/a/ports/p2", `{"spec":{"network":"n","fixed_ips":[{"ip":"2001:db8::30%eth0"}]}}`, "spec.fixed_ips[0].ip"},
		{"pair with a zone", "/v1/projects/a/ports/p2", `{"spec":{"network":"n","allowed_address_pairs":[{"ip_address":"fe80::1%eth0"}]}}`, "spec.allowed_address_pairs[0]"},
		{"pair with host bits", "/v1/projects/a/ports/p2", `{"spec":{"network":"n","allowed_address_pairs":[{"ip_address":"10.0.0.1/8"}]}}`, "spec.allowed_address_pairs[0]"},
		{"pair with a multicast MAC", "/v1/projects/a/ports/p2", `{"spec":{"network":"n","allowed_address_pairs":[{"ip_address":"10.0.0.1","mac_address":"01:00:5e:00:00:01"}]}}`, "spec.allowed_address_pairs[0]"},
		{"pair without port security", "/v1/projects/a/ports/p2", `{"spec":{"network":"n","port_security":false,"allowed_address_pairs":[{"ip_address":"10.0.0.1"}]}}`, "spec.allowed_address_pairs"},
		{"zone in a route", "/v1/projects/a/subnets/s6", `{"spec":{"network":"n","cidr":"2001:db8::/64","host_routes":[{"destination":"::/0","nexthop":"2001:db8::fe%x"}]}}`, "spec.host_routes[0].nexthop"},
	} {
		code, body := f.do(f.admin, "PUT", c.path, c.body)
		var eb api.ErrorBody
		json.Unmarshal(body, &eb)
		if code != 400 || eb.Error == nil || eb.Error.Field != c.field {
			t.Errorf("%s: %d %s, want 400 naming %q", c.name, code, body, c.field)
		}
	}
	if f.store.Epoch() != before {
		t.Fatalf("refused input moved the epoch %d -> %d", before, f.store.Epoch())
	}
}
