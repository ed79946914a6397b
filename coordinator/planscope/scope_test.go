package planscope

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

type fixture struct {
	t  *testing.T
	st *store.Store
	sc *Scope
}

func newFixture(t *testing.T) *fixture {
	st, err := store.Open(filepath.Join(t.TempDir(), "s.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sc, err := New(st, registry.Default(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, st: st, sc: sc}
}

// put commits one resource as it is (no admission) and returns the epoch.
func (f *fixture) put(kind, project, name string, spec any) uint64 {
	f.t.Helper()
	b, _ := json.Marshal(spec)
	e, _, err := f.st.Update(func(tx *store.Tx) error {
		_, _, err := tx.Put(api.Resource{Kind: kind, Project: project, Name: name, Spec: b})
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return e
}

func (f *fixture) del(kind, project, name string) uint64 {
	f.t.Helper()
	e, _, err := f.st.Update(func(tx *store.Tx) error {
		_, err := tx.Delete(api.Key{Kind: kind, Project: project, Name: name})
		return err
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return e
}

// concerned is who the commit at epoch concerned.
func (f *fixture) concerned(epoch uint64, want ...string) {
	f.t.Helper()
	hosts, all, ok := f.sc.Concerned(epoch)
	if !ok || all || len(hosts) != len(want) {
		f.t.Fatalf("epoch %d concerned %v (all %v, kept %v), want %v", epoch, hosts, all, ok, want)
	}
	for i := range want {
		if hosts[i] != want[i] {
			f.t.Fatalf("epoch %d concerned %v, want %v", epoch, hosts, want)
		}
	}
}

// plan is host's plan after since, which must be full or not as said.
func (f *fixture) plan(host string, since uint64, full bool) api.Plan {
	f.t.Helper()
	p, err := f.sc.Plan(host, since, false)
	if err != nil {
		f.t.Fatal(err)
	}
	if p.Full != full {
		f.t.Fatalf("plan of %s since %d: full %v, want %v: %+v", host, since, p.Full, full, p)
	}
	return p
}

func TestScopeFollowsPortsOntoHosts(t *testing.T) {
	f := newFixture(t)
	f.put("project", "", "a", api.ProjectSpec{})
	f.put("network", "a", "n", api.NetworkSpec{SegmentationID: 100})
	f.put("subnet", "a", "s", api.SubnetSpec{Network: "n", CIDR: "10.0.0.0/24"})
	f.put("securitygroup", "a", "web", api.SecurityGroupSpec{})
	// h1's first port on n brings n, its subnet and the project's groups:
	// a full plan, as no delta names them.
	e := f.put("port", "a", "p1", api.PortSpec{Network: "n", Host: "h1", MAC: "02:00:00:00:00:01"})
	f.concerned(e, "h1")
	p := f.plan("h1", e-1, true)
	if len(p.Resources) != 5 {
		t.Fatalf("h1's plan: %+v", p.Resources)
	}
	// A change that moves no network on or off a host is a delta to the
	// hosts of that network.
	e = f.put("port", "a", "p1", api.PortSpec{Network: "n", Host: "h1", MAC: "02:00:00:00:00:01", DNSName: "web1"})
	f.concerned(e, "h1")
	p = f.plan("h1", e-1, false)
	if len(p.Deltas) != 1 || len(p.Deltas[0].Changes) != 1 || p.Deltas[0].Changes[0].Resource.Name != "p1" {
		t.Fatalf("h1's delta: %+v", p)
	}
	// h2's first port: h2 takes a full plan, h1 a delta with the port.
	e = f.put("port", "a", "p2", api.PortSpec{Network: "n", Host: "h2", MAC: "02:00:00:00:00:02"})
	f.concerned(e, "h1", "h2")
	f.plan("h2", e-1, true)
	p = f.plan("h1", e-1, false)
	if len(p.Deltas[0].Changes) != 1 || p.Deltas[0].Changes[0].Op != api.OpPut {
		t.Fatalf("h1's delta: %+v", p)
	}
	// h3 holds nothing of a: none of this woke it, and its deltas are empty.
	p = f.plan("h3", 1, false)
	for _, d := range p.Deltas {
		if d.Epoch > 1 && len(d.Changes) != 0 {
			t.Fatalf("h3 got %+v", d)
		}
	}
	if need := f.sc.Need("h3"); need != 1 {
		t.Fatalf("h3 needs epoch %d, want 1 (the project)", need)
	}
	// An instance live-migrating to h3 brings its port's network there.
	e = f.put("instance", "a", "vm", api.InstanceSpec{Flavor: "f", Host: "h3", Ports: []string{"p1"}, Migration: &api.InstanceMigration{Source: "h1", Live: true}})
	f.concerned(e, "h1", "h3")
	f.plan("h3", e-1, true)
	// The move done: the port follows it and h1 loses the network, in a
	// full plan (its other port p2's network went with it).
	f.put("instance", "a", "vm", api.InstanceSpec{Flavor: "f", Host: "h3", Ports: []string{"p1"}})
	e = f.put("port", "a", "p1", api.PortSpec{Network: "n", Host: "h3", MAC: "02:00:00:00:00:01"})
	f.concerned(e, "h1", "h2", "h3")
	p = f.plan("h1", e-1, true)
	for _, r := range p.Resources {
		if r.Project == "a" {
			t.Fatalf("h1 has nothing of a any more, yet holds %s", r.Key())
		}
	}
	// A deleted port is a delete for the hosts of its network.
	e = f.del("port", "a", "p2")
	f.concerned(e, "h2", "h3")
	p = f.plan("h3", e-1, false)
	if c := p.Deltas[0].Changes; len(c) != 1 || c[0].Op != api.OpDelete || c[0].Resource.Name != "p2" {
		t.Fatalf("h3's delta: %+v", p)
	}
}

func TestScopeRoutersCarryTheirFloatingIPs(t *testing.T) {
	f := newFixture(t)
	f.put("router", "a", "r", api.RouterSpec{Host: "h1"})
	e := f.put("floatingip", "a", "f", api.FloatingIPSpec{ExternalNetwork: "ext", Router: "r", Port: "p"})
	f.concerned(e, "h1")
	// The router moves: its floating IP goes with it, in full plans.
	e = f.put("router", "a", "r", api.RouterSpec{Host: "h2"})
	f.concerned(e, "h1", "h2")
	p := f.plan("h2", e-1, true)
	found := false
	for _, r := range p.Resources {
		found = found || r.Kind == "floatingip"
	}
	if !found {
		t.Fatalf("h2's plan lacks the floating IP of its router: %+v", p.Resources)
	}
	if p := f.plan("h1", e-1, true); len(p.Resources) != 0 {
		t.Fatalf("h1's plan: %+v", p.Resources)
	}
}
