package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

func wantRefused(t *testing.T, f *fixture, token, method, path, body string, code int, field, inMsg string) {
	t.Helper()
	epoch := f.store.Epoch()
	got, b := f.do(token, method, path, body)
	if f.store.Epoch() != epoch {
		t.Errorf("%s %s: refused, yet the epoch moved %d -> %d", method, path, epoch, f.store.Epoch())
	}
	var eb api.ErrorBody
	json.Unmarshal(b, &eb)
	if got != code || eb.Error == nil || eb.Error.Field != field || !strings.Contains(eb.Error.Message, inMsg) {
		t.Errorf("%s %s: %d %.300s, want %d naming %q and %q", method, path, got, b, code, field, inMsg)
	}
}

// TestQuotasAndBounds: a project over its quota (counts, vCPUs and RAM,
// gigabytes) is refused with a 4xx naming the limit and nothing changes;
// shrinking stays allowed; usage is shown to the project; every list in
// a spec is capped, and a port asking for 15,000 addresses is refused at
// once, while another tenant's writes go through beside it.
func TestQuotasAndBounds(t *testing.T) {
	f := computeFixture(t)
	f.must(f.admin, "PUT", "/v1/volumetypes/default", `{"spec":{"pool":"volumes"}}`, 201)
	f.must(f.admin, "PUT", "/v1/flavors/big", `{"spec":{"vcpus":2,"ram_mib":600}}`, 201)
	var nt api.NewToken
	json.Unmarshal(f.must(f.admin, "POST", "/v1/tokens", `{"name":"a","role":"project","project":"a"}`, 201), &nt)
	tenant := nt.Secret

	// Only an admin sets quotas, for a project that exists.
	f.must(tenant, "PUT", "/v1/quotas/a", `{"spec":{"ports":100}}`, 403)
	wantRefused(t, f, f.admin, "PUT", "/v1/quotas/nope", `{}`, 400, "name", "does not exist")
	wantRefused(t, f, f.admin, "PUT", "/v1/quotas/a", `{"spec":{"ports":-2}}`, 400, "spec.ports", "not a limit")
	f.must(f.admin, "PUT", "/v1/quotas/a", `{"spec":{"networks":2,"ports":3,"vcpus":2,"volumes":5,"gigabytes":10}}`, 201)

	// The fixture holds one network and its DHCP port.
	f.must(tenant, "PUT", "/v1/projects/a/networks/n2", `{}`, 201)
	wantRefused(t, f, tenant, "PUT", "/v1/projects/a/networks/n3", `{}`, 403, "quota.networks", "quota of 2")
	f.must(tenant, "PUT", "/v1/projects/a/ports/p1", `{"spec":{"network":"net"}}`, 201)
	f.must(tenant, "PUT", "/v1/projects/a/ports/p2", `{"spec":{"network":"net"}}`, 201)
	wantRefused(t, f, tenant, "PUT", "/v1/projects/a/ports/p3", `{"spec":{"network":"net"}}`, 403, "quota.ports", "quota of 3")
	// Updating what exists is not growing.
	f.must(tenant, "PUT", "/v1/projects/a/ports/p2", `{"spec":{"network":"net","dns_name":"two"}}`, 200)
	f.must(tenant, "PUT", "/v1/projects/a/instances/vm1", `{"spec":{"flavor":"small","image":"cirros","ports":["p1"]}}`, 201)
	wantRefused(t, f, tenant, "PUT", "/v1/projects/a/instances/vm2", `{"spec":{"flavor":"big","image":"cirros","ports":["p2"]}}`, 403, "quota.vcpus", "quota of 2")
	f.must(tenant, "PUT", "/v1/projects/a/volumes/v1", `{"spec":{"size_gib":8}}`, 201)
	wantRefused(t, f, tenant, "PUT", "/v1/projects/a/volumes/v2", `{"spec":{"size_gib":3}}`, 403, "quota.gigabytes", "quota of 10")
	wantRefused(t, f, tenant, "PUT", "/v1/projects/a/volumes/v1", `{"spec":{"size_gib":11}}`, 403, "quota.gigabytes", "quota of 10")

	var q api.QuotaUsage
	json.Unmarshal(f.must(tenant, "GET", "/v1/projects/a/quota", "", 200), &q)
	want := api.QuotaUsage{Project: "a",
		Limits: api.QuotaSpec{Networks: 2, Ports: 3, Routers: 20, FloatingIPs: 100, Instances: 100, VCPUs: 2, RAMMiB: 1 << 20, Volumes: 5, Gigabytes: 10},
		Usage:  api.QuotaSpec{Networks: 2, Ports: 3, Instances: 1, VCPUs: 1, RAMMiB: 600, Volumes: 1, Gigabytes: 8}}
	if q != want {
		t.Errorf("quota usage\n got %+v\nwant %+v", q, want)
	}
	f.must(f.admin, "PUT", "/v1/projects/b", `{}`, 201)
	f.must(tenant, "GET", "/v1/projects/b/quota", "", 403)
	// Lowering a quota below usage keeps what exists, refuses growth.
	f.must(f.admin, "PUT", "/v1/quotas/a", `{"spec":{"ports":1}}`, 200)
	f.must(tenant, "PUT", "/v1/projects/a/ports/p2", `{"spec":{"network":"net","dns_name":"again"}}`, 200)
	wantRefused(t, f, tenant, "PUT", "/v1/projects/a/ports/p3", `{"spec":{"network":"net"}}`, 403, "quota.ports", "quota of 1")

	// Caps on lists, named.
	var ips []string
	for i := 0; i < 15000; i++ {
		ips = append(ips, `{"subnet":"sub"}`)
	}
	huge := `{"spec":{"network":"net","fixed_ips":[` + strings.Join(ips, ",") + `]}}`
	wantRefused(t, f, f.admin, "PUT", "/v1/projects/a/ports/huge", `{"spec":{"network":"net","fixed_ips":[`+strings.Join(ips[:17], ",")+`]}}`, 400, "spec.fixed_ips", "limit of 16")
	wantRefused(t, f, f.admin, "PUT", "/v1/projects/a/subnets/s2", `{"spec":{"network":"n2","cidr":"10.9.0.0/16","dns_servers":["1.1.1.1","1.1.1.2","1.1.1.3","1.1.1.4","1.1.1.5","1.1.1.6","1.1.1.7","1.1.1.8","1.1.1.9"]}}`, 400, "spec.dns_servers", "limit of 8")
	rules := strings.Repeat(`{"direction":"ingress"},`, MaxListItems)
	wantRefused(t, f, f.admin, "PUT", "/v1/projects/a/securitygroups/g", `{"spec":{"rules":[`+rules+`{"direction":"egress"}]}}`, 400, "spec.rules", fmt.Sprintf("limit of %d", MaxListItems))
	// An admin's port with the most addresses allowed is fine (quota: -1).
	f.must(f.admin, "PUT", "/v1/quotas/a", `{"spec":{"ports":-1}}`, 200)
	f.must(f.admin, "PUT", "/v1/projects/a/ports/wide", `{"spec":{"network":"net","fixed_ips":[`+strings.Join(ips[:16], ",")+`]}}`, 201)
	if p := portSpec(t, f, "a", "wide"); len(p.FixedIPs) != 16 {
		t.Fatalf("wide port got %d addresses", len(p.FixedIPs))
	}

	// The 15,000-address request, sent over and over, beside another
	// tenant's writes: each is refused, every write of b lands. Timings
	// are printed, not asserted.
	f.must(f.admin, "PUT", "/v1/projects/b/networks/nb", `{}`, 201)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	refused := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if code, _ := f.do(tenant, "PUT", "/v1/projects/a/ports/huge", huge); code == 400 {
				refused++
			}
		}
	}()
	start := time.Now()
	for i := 0; i < 20; i++ {
		f.must(f.admin, "PUT", fmt.Sprintf("/v1/projects/b/ports/q%d", i), `{"spec":{"network":"nb"}}`, 201)
	}
	took := time.Since(start)
	close(stop)
	wg.Wait()
	if refused == 0 {
		t.Fatal("the 15,000-address request was never answered with 400")
	}
	t.Logf("20 writes of project b took %v beside %d refused 15,000-address requests", took, refused)
}
