package api

import (
	"encoding/json"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

func portSpec(t *testing.T, f *fixture, project, name string) api.PortSpec {
	t.Helper()
	var r api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/"+project+"/ports/"+name, "", 200), &r)
	var s api.PortSpec
	json.Unmarshal(r.Spec, &s)
	return s
}

func TestNetworksSubnetsPortsAndIPAM(t *testing.T) {
	f := newFixture(t, api.Host{Name: "h1", State: api.StateAlive}, api.Host{Name: "h2", State: api.StateAlive})
	for _, p := range []string{"a", "b"} {
		f.must(f.admin, "PUT", "/v1/projects/"+p, `{}`, 201)
		f.must(f.admin, "PUT", "/v1/projects/"+p+"/networks/net1", `{}`, 201)
		// The same CIDR in two projects is fine.
		f.must(f.admin, "PUT", "/v1/projects/"+p+"/subnets/sub1", `{"spec":{"network":"net1","cidr":"10.1.1.0/24"}}`, 201)
	}
	var na, nb api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/a/networks/net1", "", 200), &na)
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/b/networks/net1", "", 200), &nb)
	sa, sb := decodeSpec[api.NetworkSpec](na), decodeSpec[api.NetworkSpec](nb)
	if sa.SegmentationID != 1000 || sb.SegmentationID != 1001 || sa.MTU != 1450 || sa.DHCPHost == "" {
		t.Fatalf("network a %+v b %+v", sa, sb)
	}
	dhcp := portSpec(t, f, "a", "dhcp-net1")
	if dhcp.Owner != api.PortOwnerDHCP || dhcp.Host != sa.DHCPHost || len(dhcp.FixedIPs) != 1 || dhcp.FixedIPs[0].IP != "10.1.1.2" {
		t.Fatalf("dhcp port %+v", dhcp)
	}

	var pr api.PutResult
	json.Unmarshal(f.must(f.admin, "PUT", "/v1/projects/a/ports/p1", `{"spec":{"network":"net1","host":"h1","owner":"endpoint"}}`, 201), &pr)
	p1 := portSpec(t, f, "a", "p1")
	if p1.MAC == "" || len(p1.FixedIPs) != 1 || p1.FixedIPs[0].IP != "10.1.1.3" || p1.FixedIPs[0].Subnet != "sub1" || p1.DNSName != "p1" {
		t.Fatalf("p1 %+v", p1)
	}
	// Applying the same user spec again keeps the allocations: no change.
	json.Unmarshal(f.must(f.admin, "PUT", "/v1/projects/a/ports/p1", `{"spec":{"network":"net1","host":"h1","owner":"endpoint"}}`, 200), &pr)
	if pr.Changed {
		t.Fatalf("re-applying a port changed it: %+v", pr)
	}
	f.must(f.admin, "PUT", "/v1/projects/a/ports/p2", `{"spec":{"network":"net1","fixed_ips":[{"ip":"10.1.1.50"}],"mac":"02:00:00:00:00:aa"}}`, 201)
	if p2 := portSpec(t, f, "a", "p2"); p2.FixedIPs[0].Subnet != "sub1" {
		t.Fatalf("p2 subnet not resolved from ip: %+v", p2)
	}

	bad := []struct {
		name, path, body, field string
		code                    int
	}{
		{"overlapping subnet", "/v1/projects/a/subnets/sub2", `{"spec":{"network":"net1","cidr":"10.1.1.128/25"}}`, "spec.cidr", 400},
		{"host bits in cidr", "/v1/projects/a/subnets/sub2", `{"spec":{"network":"net1","cidr":"10.2.0.1/24"}}`, "spec.cidr", 400},
		{"gateway outside", "/v1/projects/a/subnets/sub2", `{"spec":{"network":"net1","cidr":"10.2.0.0/24","gateway":"10.3.0.1"}}`, "spec.gateway", 400},
		{"pool outside", "/v1/projects/a/subnets/sub2", `{"spec":{"network":"net1","cidr":"10.2.0.0/24","allocation_pools":[{"start":"10.2.0.10","end":"10.2.1.5"}]}}`, "spec.allocation_pools[0].end", 400},
		{"subnet unknown network", "/v1/projects/a/subnets/sub2", `{"spec":{"network":"nope","cidr":"10.2.0.0/24"}}`, "spec.network", 400},
		{"fixed ip outside cidr", "/v1/projects/a/ports/p3", `{"spec":{"network":"net1","fixed_ips":[{"subnet":"sub1","ip":"10.9.9.9"}]}}`, "spec.fixed_ips[0].ip", 400},
		{"fixed ip in no subnet", "/v1/projects/a/ports/p3", `{"spec":{"network":"net1","fixed_ips":[{"ip":"10.9.9.9"}]}}`, "spec.fixed_ips[0].ip", 400},
		{"fixed ip is gateway", "/v1/projects/a/ports/p3", `{"spec":{"network":"net1","fixed_ips":[{"ip":"10.1.1.1"}]}}`, "spec.fixed_ips[0].ip", 400},
		{"duplicate ip", "/v1/projects/a/ports/p3", `{"spec":{"network":"net1","fixed_ips":[{"ip":"10.1.1.50"}]}}`, "spec.fixed_ips[0].ip", 400},
		{"duplicate mac", "/v1/projects/a/ports/p3", `{"spec":{"network":"net1","mac":"02:00:00:00:00:AA"}}`, "spec.mac", 400},
		{"multicast mac", "/v1/projects/a/ports/p3", `{"spec":{"network":"net1","mac":"01:00:5e:00:00:01"}}`, "spec.mac", 400},
		{"unknown network", "/v1/projects/a/ports/p3", `{"spec":{"network":"nope"}}`, "spec.network", 400},
		{"unknown subnet", "/v1/projects/a/ports/p3", `{"spec":{"network":"net1","fixed_ips":[{"subnet":"zzz"}]}}`, "spec.fixed_ips[0].subnet", 400},
		{"endpoint without host", "/v1/projects/a/ports/p3", `{"spec":{"network":"net1","owner":"endpoint"}}`, "spec.host", 400},
		{"mtu above underlay", "/v1/projects/a/networks/net2", `{"spec":{"mtu":1500}}`, "spec.mtu", 400},
		{"vni above 24 bits", "/v1/projects/a/networks/net2", `{"spec":{"segmentation_id":16777216}}`, "spec.segmentation_id", 400},
		{"vni change", "/v1/projects/a/networks/net1", `{"spec":{"segmentation_id":4000}}`, "spec.segmentation_id", 400},
		{"vni taken", "/v1/projects/a/networks/net2", `{"spec":{"segmentation_id":1001}}`, "", 409},
		{"unknown type", "/v1/projects/a/networks/net2", `{"spec":{"type":"geneve"}}`, "spec.type", 400},
		{"type change", "/v1/projects/a/networks/net1", `{"spec":{"type":"gre"}}`, "spec.type", 400},
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

	// A GRE network beside the VXLAN ones: its key comes from the same
	// segmentation ID range, and its type stays when a later apply omits it.
	f.must(f.admin, "PUT", "/v1/projects/a/networks/gre1", `{"spec":{"type":"gre"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/networks/gre1", `{"spec":{"mtu":1400}}`, 200)
	var gr api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/a/networks/gre1", "", 200), &gr)
	if gs := decodeSpec[api.NetworkSpec](gr); gs.Type != "gre" || gs.SegmentationID == 0 || gs.SegmentationID == sa.SegmentationID {
		t.Errorf("gre network %+v", gs)
	}

	// A project token may not pick a VNI, and stays in its project.
	var nt api.NewToken
	json.Unmarshal(f.must(f.admin, "POST", "/v1/tokens", `{"name":"a","role":"project","project":"a"}`, 201), &nt)
	f.must(nt.Secret, "PUT", "/v1/projects/a/networks/net3", `{"spec":{"segmentation_id":5000}}`, 403)
	f.must(nt.Secret, "PUT", "/v1/projects/a/networks/net3", `{}`, 201)
	f.must(nt.Secret, "GET", "/v1/projects/b/ports", "", 403)

	// Deletes go in dependency order; the DHCP port goes with its subnet.
	f.must(f.admin, "DELETE", "/v1/projects/a/networks/net1", "", 409)
	f.must(f.admin, "DELETE", "/v1/projects/a/subnets/sub1", "", 409)
	f.must(f.admin, "DELETE", "/v1/projects/a/ports/p1", "", 200)
	f.must(f.admin, "DELETE", "/v1/projects/a/ports/p2", "", 200)
	f.must(f.admin, "DELETE", "/v1/projects/a/subnets/sub1", "", 200)
	f.must(f.admin, "GET", "/v1/projects/a/ports/dhcp-net1", "", 404)
	f.must(f.admin, "DELETE", "/v1/projects/a/networks/net1", "", 200)
}

func TestDHCPNeedsAnAliveHost(t *testing.T) {
	f := newFixture(t, api.Host{Name: "h1", State: api.StateDead})
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/networks/n", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/subnets/s", `{"spec":{"network":"n","cidr":"10.0.0.0/24"}}`, 409)
	f.must(f.admin, "PUT", "/v1/projects/a/subnets/s", `{"spec":{"network":"n","cidr":"10.0.0.0/24","dhcp":false}}`, 201)
	// A named DHCP host may be down (it is known); one nobody knows is refused.
	f.must(f.admin, "PUT", "/v1/projects/a/networks/m", `{"spec":{"dhcp_host":"h9"}}`, 409)
	f.must(f.admin, "PUT", "/v1/projects/a/networks/m", `{"spec":{"dhcp_host":"h1"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/subnets/t", `{"spec":{"network":"m","cidr":"10.0.0.0/24"}}`, 201)
	if p := portSpec(t, f, "a", "dhcp-m"); p.Host != "h1" {
		t.Fatalf("dhcp port should follow dhcp_host: %+v", p)
	}
}

func decodeSpec[T any](r api.Resource) T {
	var v T
	_ = json.Unmarshal(r.Spec, &v)
	return v
}
