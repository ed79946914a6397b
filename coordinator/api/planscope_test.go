package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
)

// fullPlan is host's full plan, and its JSON as sent.
func (f *fixture) fullPlan(host string) (api.Plan, string) {
	f.t.Helper()
	b := f.must(f.admin, "GET", "/v1/hosts/"+host+"/plan?since=0", "", 200)
	var p api.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		f.t.Fatal(err)
	}
	return p, string(b)
}

func holds(p api.Plan, kind, project, name string) bool {
	for _, r := range p.Resources {
		if r.Kind == kind && r.Project == project && r.Name == name {
			return true
		}
	}
	return false
}

// twoTenants is computeFixture plus project b, whose network bnet has its
// DHCP on h2, and an instance of each project: va on h1, vb on h2, each
// with its own user data.
func twoTenants(t *testing.T) *fixture {
	f := computeFixture(t)
	f.must(f.admin, "PUT", "/v1/projects/b", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/b/networks/bnet", `{"spec":{"dhcp_host":"h2"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/b/subnets/bsub", `{"spec":{"network":"bnet","cidr":"10.2.2.0/24"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/instances/va", `{"spec":{"flavor":"small","image":"cirros","networks":["net"],"host":"h1","user_data":"tenant-a-secret"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/b/instances/vb", `{"spec":{"flavor":"small","image":"cirros","networks":["bnet"],"host":"h2","user_data":"tenant-b-secret"}}`, 201)
	return f
}

// A host's plan holds what concerns it: its instances, the networks it
// has a port on with their subnets and ports, the global kinds; never
// another tenant's instance or user data.
func TestPlanHoldsOnlyWhatConcernsTheHost(t *testing.T) {
	f := twoTenants(t)
	p1, raw1 := f.fullPlan("h1")
	p2, raw2 := f.fullPlan("h2")
	for _, want := range []struct {
		p                   api.Plan
		kind, project, name string
	}{
		{p1, "instance", "a", "va"}, {p1, "network", "a", "net"}, {p1, "subnet", "a", "sub"}, {p1, "port", "a", api.DHCPPortName("net")},
		{p1, "flavor", "", "small"}, {p1, "image", "", "cirros"}, {p1, "project", "", "b"},
		{p2, "instance", "b", "vb"}, {p2, "network", "b", "bnet"}, {p2, "subnet", "b", "bsub"},
	} {
		if !holds(want.p, want.kind, want.project, want.name) {
			t.Errorf("%s's plan lacks %s %s/%s", want.p.Host, want.kind, want.project, want.name)
		}
	}
	for _, p := range []api.Plan{p1, p2} {
		other := map[string]string{"h1": "b", "h2": "a"}[p.Host]
		for _, r := range p.Resources {
			if r.Project == other {
				t.Errorf("%s's plan holds %s of tenant %s, which has nothing on it", p.Host, r.Key(), other)
			}
		}
	}
	if strings.Contains(raw1, "tenant-b-secret") || strings.Contains(raw2, "tenant-a-secret") {
		t.Errorf("a host's plan carries another tenant's user data")
	}
	p3, _ := f.fullPlan("h3")
	for _, r := range p3.Resources {
		if r.Project != "" {
			t.Errorf("h3 has nothing placed on it, yet its plan holds %s", r.Key())
		}
	}

	// A port of b's network bound to h1 brings the network, its subnet and
	// ports to h1; vb and its user data stay on h2.
	f.must(f.admin, "PUT", "/v1/projects/b/ports/on-h1", `{"spec":{"network":"bnet","host":"h1"}}`, 201)
	p1, raw1 = f.fullPlan("h1")
	for _, name := range []string{"on-h1", api.DHCPPortName("bnet")} {
		if !holds(p1, "port", "b", name) {
			t.Errorf("h1's plan lacks port b/%s of a network it has a port on", name)
		}
	}
	if !holds(p1, "network", "b", "bnet") || !holds(p1, "subnet", "b", "bsub") || holds(p1, "instance", "b", "vb") || strings.Contains(raw1, "tenant-b-secret") {
		t.Errorf("h1's plan after its port on bnet: %+v", p1.Resources)
	}
}

// A change to tenant a's network wakes the hosts with a port on it and
// no other; its deltas hold only what the host's plan holds.
func TestChangeWakesOnlyTheHostsItConcerns(t *testing.T) {
	f := twoTenants(t)
	epoch := f.store.Epoch()
	type answer struct {
		p  api.Plan
		at time.Time
	}
	poll := func(host string, wait string) chan answer {
		done := make(chan answer, 1)
		go func() {
			_, b := f.do(f.admin, "GET", fmt.Sprintf("/v1/hosts/%s/plan?since=%d&wait=%s", host, epoch, wait), "")
			var p api.Plan
			json.Unmarshal(b, &p)
			done <- answer{p, time.Now()}
		}()
		return done
	}
	h1, h2, h3 := poll("h1", "60s"), poll("h2", "4s"), poll("h3", "4s")
	// Parked: the polls wait for a commit that concerns their host.
	testenv.WaitTrue(t, testenv.Scale(10*time.Second), "three hosts parked", func() bool {
		return f.server.scope.Waiting() == 3
	})
	committed := time.Now()
	f.must(f.admin, "PUT", "/v1/projects/a/subnets/sub", `{"spec":{"network":"net","cidr":"10.1.1.0/24","dns_servers":["10.1.1.53"]}}`, 200)
	var a1 answer
	select {
	case a1 = <-h1:
	case <-time.After(testenv.Scale(30 * time.Second)):
		t.Fatal("h1, with ports on the changed network, was not woken")
	}
	if len(a1.p.Deltas) != 1 || len(a1.p.Deltas[0].Changes) != 1 || a1.p.Deltas[0].Changes[0].Resource.Name != "sub" {
		t.Fatalf("h1's delta: %+v", a1.p)
	}
	hosts, all, ok := f.server.scope.Concerned(epoch + 1)
	if !ok || all || len(hosts) != 1 || hosts[0] != "h1" {
		t.Errorf("the subnet change concerned %v (all %v, kept %v), want only h1", hosts, all, ok)
	}
	for name, ch := range map[string]chan answer{"h2": h2, "h3": h3} {
		a := <-ch
		// Not woken: answered when its own wait ran out, with the epoch
		// it missed as an empty delta.
		if a.at.Sub(committed) < 3*time.Second {
			t.Errorf("%s, with nothing on tenant a's network, was answered %v after the commit", name, a.at.Sub(committed))
		}
		if a.p.Full || len(a.p.Deltas) != 1 || len(a.p.Deltas[0].Changes) != 0 {
			t.Errorf("%s's answer: %+v", name, a.p)
		}
	}
	// Converged means applied what concerns the host: h2 at the older
	// epoch is converged, h1 must reach the new one.
	if need := f.server.need("h2"); need > epoch {
		t.Errorf("h2 needs epoch %d, but nothing after %d concerns it", need, epoch)
	}
	if need := f.server.need("h1"); need != epoch+1 {
		t.Errorf("h1 needs epoch %d, want %d", need, epoch+1)
	}
}
