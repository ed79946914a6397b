package api

import (
	"encoding/json"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

// TestTenantChoosesOnlyWhatItMay: a project token takes provider
// addresses only from the external network's pools, and never picks a
// network's DHCP host or a port's host; an admin may do all of it, and a
// tenant's later update of what the admin chose still goes through.
func TestTenantChoosesOnlyWhatItMay(t *testing.T) {
	f := newFixture(t, api.Host{Name: "h1", State: api.StateAlive})
	for _, c := range []struct{ path, body string }{
		{"/v1/externalnetworks/ext", `{"spec":{"physical_network":"physnet1","cidr":"203.0.113.0/24","gateway":"203.0.113.1","allocation_pools":[{"start":"203.0.113.10","end":"203.0.113.20"}]}}`},
		{"/v1/projects/p", `{}`},
		{"/v1/projects/p/networks/n1", `{}`},
		{"/v1/projects/p/subnets/s1", `{"spec":{"network":"n1","cidr":"10.1.0.0/24"}}`},
	} {
		f.must(f.admin, "PUT", c.path, c.body, 201)
	}
	var nt api.NewToken
	json.Unmarshal(f.must(f.admin, "POST", "/v1/tokens", `{"name":"p","role":"project","project":"p"}`, 201), &nt)
	tenant := nt.Secret

	before := f.store.Epoch()
	for _, c := range []struct{ name, path, body, field string }{
		{"floating ip outside the pools", "/v1/projects/p/floatingips/f1", `{"spec":{"external_network":"ext","ip":"203.0.113.50"}}`, "spec.ip"},
		{"router gateway outside the pools", "/v1/projects/p/routers/r1", `{"spec":{"external_network":"ext","external_ip":"203.0.113.2"}}`, "spec.external_ip"},
		{"dhcp host", "/v1/projects/p/networks/n2", `{"spec":{"dhcp_host":"h1"}}`, "spec.dhcp_host"},
		{"dhcp host changed", "/v1/projects/p/networks/n1", `{"spec":{"dhcp_host":"h2"}}`, "spec.dhcp_host"},
		{"port host", "/v1/projects/p/ports/p1", `{"spec":{"network":"n1","host":"h1"}}`, "spec.host"},
		{"endpoint port", "/v1/projects/p/ports/p1", `{"spec":{"network":"n1","host":"h1","owner":"endpoint"}}`, "spec.host"},
	} {
		code, body := f.do(tenant, "PUT", c.path, c.body)
		var eb api.ErrorBody
		json.Unmarshal(body, &eb)
		if code != 403 || eb.Error == nil || eb.Error.Field != c.field {
			t.Errorf("%s: %d %s, want 403 naming %q", c.name, code, body, c.field)
		}
	}
	if f.store.Epoch() != before {
		t.Fatalf("refused input moved the epoch %d -> %d", before, f.store.Epoch())
	}

	// In the pools, or allocated: fine for a tenant.
	f.must(tenant, "PUT", "/v1/projects/p/floatingips/f1", `{"spec":{"external_network":"ext","ip":"203.0.113.15"}}`, 201)
	f.must(tenant, "PUT", "/v1/projects/p/floatingips/f2", `{"spec":{"external_network":"ext"}}`, 201)
	f.must(tenant, "PUT", "/v1/projects/p/ports/p1", `{"spec":{"network":"n1"}}`, 201)
	// An admin chooses anything usable; the tenant may then update it.
	f.must(f.admin, "PUT", "/v1/projects/p/floatingips/f3", `{"spec":{"external_network":"ext","ip":"203.0.113.50"}}`, 201)
	f.must(tenant, "PUT", "/v1/projects/p/floatingips/f3", `{"spec":{"external_network":"ext"}}`, 200)
	f.must(f.admin, "PUT", "/v1/projects/p/ports/p2", `{"spec":{"network":"n1","host":"h1","owner":"endpoint"}}`, 201)
	f.must(tenant, "PUT", "/v1/projects/p/ports/p2", `{"spec":{"network":"n1","host":"h1","owner":"endpoint","dns_name":"ep"}}`, 200)
	f.must(tenant, "PUT", "/v1/projects/p/networks/n1", `{"spec":{"mtu":1400}}`, 200)
}
