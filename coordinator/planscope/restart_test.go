package planscope

import (
	"path/filepath"
	"testing"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// TestRestartedScopeServesDeltas: a coordinator restarted on the same
// store answers hosts from before its start with deltas rebuilt from the
// store's delta log (not full plans), and what they build from them is
// their full plan, for a host whose plan the commits changed, one they
// rescoped (a first port on a network, an attached volume), one they did
// not concern, and a storage host.
func TestRestartedScopeServesDeltas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := New(st, registry.Default(), 0)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, st: st, sc: sc}
	f.put("project", "", "a", api.ProjectSpec{})
	f.put("volumetype", "", "default", api.VolumeTypeSpec{Pool: "volumes"})
	f.put("network", "a", "n", api.NetworkSpec{SegmentationID: 100})
	f.put("port", "a", "p1", api.PortSpec{Network: "n", Host: "h1", MAC: "02:00:00:00:00:01"})
	f.put("volume", "a", "v1", api.VolumeSpec{SizeGiB: 1})
	type follower struct {
		host    string
		storage bool
		state   *plan.State
	}
	fs := []*follower{{host: "h1"}, {host: "h2"}, {host: "h3"}, {host: "c1", storage: true}}
	follow := func(fl *follower) api.Plan {
		t.Helper()
		p, err := f.sc.Plan(fl.host, fl.state.Epoch, fl.storage)
		if err != nil {
			t.Fatal(err)
		}
		if err := fl.state.Apply(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, fl := range fs {
		fl.state = plan.NewState()
		follow(fl)
	}
	at := fs[0].state.Epoch
	// Commits the hosts have not seen when the coordinator stops.
	f.put("port", "a", "p1", api.PortSpec{Network: "n", Host: "h1", MAC: "02:00:00:00:00:01", DNSName: "web"})
	f.put("port", "a", "p2", api.PortSpec{Network: "n", Host: "h2", MAC: "02:00:00:00:00:02"})
	f.put("instance", "a", "vm", api.InstanceSpec{Flavor: "f", Host: "h1", Volumes: []string{"v1"}})
	f.put("volumesnapshot", "a", "s1", api.VolumeSnapshotSpec{Volume: "v1"})
	f.del("port", "a", "p1")
	stopped := st.Epoch()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// The restart: the same store, a new scope.
	st, err = store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if f.sc, err = New(st, registry.Default(), 0); err != nil {
		t.Fatal(err)
	}
	f.st = st
	if st.Epoch() != stopped {
		t.Fatalf("store at epoch %d after the restart, want %d", st.Epoch(), stopped)
	}
	f.put("volume", "a", "v1", api.VolumeSpec{SizeGiB: 2}) // and one after it
	fulls := map[string]bool{}
	for _, fl := range fs {
		p := follow(fl)
		fulls[fl.host] = p.Full
		full, err := f.sc.Plan(fl.host, 0, fl.storage)
		if err != nil {
			t.Fatal(err)
		}
		if len(full.Resources) != len(fl.state.Resources) {
			t.Fatalf("%s built %d resources from epoch %d, its full plan has %d: %+v", fl.host, len(fl.state.Resources), at, len(full.Resources), p)
		}
		for _, r := range full.Resources {
			if got, ok := fl.state.Resources[r.Key().String()]; !ok || got.Epoch != r.Epoch {
				t.Fatalf("%s lacks %s@%d by deltas", fl.host, r.Key(), r.Epoch)
			}
		}
	}
	// h2 got its first port on n (the network and p1 came with it), and h1
	// its volume through an attach: both rescoped, full plans as on a
	// coordinator that never stopped. h3 and the storage host go on by
	// deltas.
	if fulls["h3"] || fulls["c1"] {
		t.Fatalf("a restarted coordinator answered from epoch %d with full plans: %v", at, fulls)
	}
	if !fulls["h2"] || !fulls["h1"] {
		t.Fatalf("rescoped hosts: %v, want full plans for h1 and h2", fulls)
	}
}
