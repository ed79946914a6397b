package planscope

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/api"
)

func kinds(p api.Plan, kind string) map[string]bool {
	out := map[string]bool{}
	for _, r := range p.Resources {
		if r.Kind == kind {
			out[r.Project+"/"+r.Name] = true
		}
	}
	return out
}

// TestScopeVolumesFollowInstances: a volume is in the plan of the hosts
// whose instances attach it or boot from it (both ends of a move), and its
// snapshots with it (the host that maps a krbd volume takes them); a
// storage host's plan holds every volume and snapshot, and every volume
// change wakes it.
func TestScopeVolumesFollowInstances(t *testing.T) {
	f := newFixture(t)
	f.put("volumetype", "", "default", api.VolumeTypeSpec{Pool: "volumes"})
	f.put("volume", "a", "v1", api.VolumeSpec{SizeGiB: 1})
	f.put("volume", "a", "boot", api.VolumeSpec{SizeGiB: 1})
	e := f.put("volumesnapshot", "a", "s1", api.VolumeSnapshotSpec{Volume: "v1"})
	// No host has an instance: the volumes concern nobody but storage hosts.
	f.concerned(e)
	if p := f.plan("h1", 0, true); len(kinds(p, "volume")) != 0 || len(kinds(p, "volumesnapshot")) != 0 {
		t.Fatalf("h1 holds volumes of no instance of its: %+v", p.Resources)
	}
	st, err := f.sc.Plan("c1", 0, true)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Storage || len(kinds(st, "volume")) != 2 || len(kinds(st, "volumesnapshot")) != 1 {
		t.Fatalf("storage plan: %+v", st)
	}
	f.sc.NoteStorage("c1")
	at := st.Epoch

	// An instance on h1 booting from "boot" with v1 attached brings both
	// to h1, and v1's snapshot, in a full plan (the commit did not change
	// them).
	e = f.put("instance", "a", "vm", api.InstanceSpec{Flavor: "f", Host: "h1", BootVolume: "boot", Volumes: []string{"v1"}})
	f.concerned(e, "h1")
	p := f.plan("h1", e-1, true)
	if v, s := kinds(p, "volume"), kinds(p, "volumesnapshot"); !v["a/v1"] || !v["a/boot"] || len(v) != 2 || !s["a/s1"] || len(s) != 1 {
		t.Fatalf("h1's plan: %+v", p.Resources)
	}
	// A change to v1 is a delta to h1 and the storage host, no one else.
	ch := f.sc.Changed("c1")
	e = f.put("volume", "a", "v1", api.VolumeSpec{SizeGiB: 2})
	f.concerned(e, "c1", "h1")
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("a volume change did not wake the storage host")
	}
	if p := f.plan("h1", e-1, false); len(p.Deltas[0].Changes) != 1 || p.Deltas[0].Changes[0].Resource.Name != "v1" {
		t.Fatalf("h1's delta: %+v", p)
	}
	if p := f.plan("h2", e-1, false); len(p.Deltas[0].Changes) != 0 {
		t.Fatalf("h2's delta: %+v", p)
	}
	if n := f.sc.Need("c1"); n != e {
		t.Fatalf("storage host needs epoch %d, want %d", n, e)
	}
	// A snapshot of v1 concerns the storage host and h1, which holds v1.
	e = f.put("volumesnapshot", "a", "s2", api.VolumeSnapshotSpec{Volume: "v1"})
	f.concerned(e, "c1", "h1")
	if p := f.plan("h1", e-1, false); len(p.Deltas[0].Changes) != 1 || p.Deltas[0].Changes[0].Resource.Name != "s2" {
		t.Fatalf("h1's delta for a snapshot of its volume: %+v", p)
	}
	// A snapshot of a volume no instance uses concerns the storage host.
	f.put("volume", "a", "spare", api.VolumeSpec{SizeGiB: 1})
	e = f.put("volumesnapshot", "a", "s3", api.VolumeSnapshotSpec{Volume: "spare"})
	f.concerned(e, "c1")
	sp, err := f.sc.Plan("c1", at, true)
	if err != nil || sp.Full || !sp.Storage {
		t.Fatalf("storage host's deltas: %+v %v", sp, err)
	}
	n := 0
	for _, d := range sp.Deltas {
		n += len(d.Changes)
	}
	// v1, s2, spare, s3 and nothing of the instance (not on c1).
	if n != 4 {
		t.Fatalf("storage host's deltas since %d: %+v", at, sp.Deltas)
	}
	// The instance moves to h2: h1 (source) and h2 both hold the volumes;
	// done, h1 lets them go.
	f.put("instance", "a", "vm", api.InstanceSpec{Flavor: "f", Host: "h2", BootVolume: "boot", Volumes: []string{"v1"}, Migration: &api.InstanceMigration{Source: "h1", Live: true}})
	if v := kinds(f.plan("h2", 0, true), "volume"); len(v) != 2 {
		t.Fatalf("h2 during the move: %v", v)
	}
	if v := kinds(f.plan("h1", 0, true), "volume"); len(v) != 2 {
		t.Fatalf("h1 during the move: %v", v)
	}
	e = f.put("instance", "a", "vm", api.InstanceSpec{Flavor: "f", Host: "h2", BootVolume: "boot"})
	f.concerned(e, "h1", "h2")
	if v := kinds(f.plan("h1", e-1, true), "volume"); len(v) != 0 {
		t.Fatalf("h1 after the move: %v", v)
	}
	if v := kinds(f.plan("h2", e-1, true), "volume"); len(v) != 1 || !v["a/boot"] {
		t.Fatalf("h2 after detaching v1: %v", v)
	}
}

// TestScopeVolumeDeltasEqualFullPlans drives random commits of instances,
// volumes, snapshots and ports, and checks after each that every host's
// plan built from its deltas is its full plan, for plain hosts and for a
// storage host. Rerun a failure with the printed seed.
func TestScopeVolumeDeltasEqualFullPlans(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	f := newFixture(t)
	f.put("volumetype", "", "default", api.VolumeTypeSpec{Pool: "volumes"})
	f.put("network", "a", "n", api.NetworkSpec{SegmentationID: 100})
	hosts := []string{"h1", "h2", "h3"}
	vols := []string{"v1", "v2", "v3", "v4"}
	insts := []string{"i1", "i2", "i3"}
	pick := func(xs []string) string { return xs[r.IntN(len(xs))] }
	type follower struct {
		host    string
		storage bool
		state   *plan.State
	}
	var fs []*follower
	for _, h := range hosts {
		fs = append(fs, &follower{host: h, state: plan.NewState()})
	}
	fs = append(fs, &follower{host: "c1", storage: true, state: plan.NewState()})
	f.sc.NoteStorage("c1")
	var history []string
	fulls, deltas := 0, 0
	for i := 0; i < 600; i++ {
		var what string
		switch n := r.IntN(10); {
		case n < 4:
			s := api.InstanceSpec{Flavor: "f", Host: pick(append(hosts, ""))}
			if r.IntN(3) == 0 {
				s.BootVolume = pick(vols)
			}
			for _, v := range vols {
				if r.IntN(3) == 0 && v != s.BootVolume {
					s.Volumes = append(s.Volumes, v)
				}
			}
			if r.IntN(4) == 0 {
				s.Migration = &api.InstanceMigration{Source: pick(hosts), Live: true}
			}
			if r.IntN(3) == 0 {
				s.Ports = []string{"p1"}
			}
			name := pick(insts)
			if r.IntN(5) == 0 {
				f.del("instance", "a", name)
				what = "delete instance " + name
			} else {
				f.put("instance", "a", name, s)
				what = fmt.Sprintf("put instance %s %+v", name, s)
			}
		case n < 7:
			name := pick(vols)
			if r.IntN(4) == 0 {
				f.del("volume", "a", name)
				what = "delete volume " + name
			} else {
				f.put("volume", "a", name, api.VolumeSpec{SizeGiB: 1 + r.IntN(5)})
				what = "put volume " + name
			}
		case n < 9:
			name := fmt.Sprint("s", r.IntN(3))
			if r.IntN(3) == 0 {
				f.del("volumesnapshot", "a", name)
				what = "delete snapshot " + name
			} else {
				f.put("volumesnapshot", "a", name, api.VolumeSnapshotSpec{Volume: pick(vols)})
				what = "put snapshot " + name
			}
		default:
			f.put("port", "a", "p1", api.PortSpec{Network: "n", Host: pick(hosts), MAC: "02:00:00:00:00:01"})
			what = "put port p1"
		}
		history = append(history, what)
		for _, fl := range fs {
			p, err := f.sc.Plan(fl.host, fl.state.Epoch, fl.storage)
			if err != nil {
				t.Fatal(err)
			}
			if p.Full {
				fulls++
			} else {
				deltas++
			}
			if err := fl.state.Apply(p); err != nil {
				t.Fatalf("seed %d step %d: %s: %v", seed, i, fl.host, err)
			}
			full, err := f.sc.Plan(fl.host, 0, fl.storage)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]uint64{}
			for _, res := range full.Resources {
				want[res.Key().String()] = res.Epoch
			}
			for k, res := range fl.state.Resources {
				if e, ok := want[k]; !ok || e != res.Epoch {
					t.Fatalf("seed %d step %d: %s (storage %v) holds %s@%d by deltas, full plan: %v@%d\n%v", seed, i, fl.host, fl.storage, k, res.Epoch, ok, e, history[max(0, len(history)-10):])
				}
			}
			for k := range want {
				if _, ok := fl.state.Resources[k]; !ok {
					t.Fatalf("seed %d step %d: %s (storage %v) lacks %s by deltas\n%v", seed, i, fl.host, fl.storage, k, history[max(0, len(history)-10):])
				}
			}
		}
	}
	t.Logf("600 commits, %d delta answers, %d full plans", deltas, fulls)
	if deltas < fulls {
		t.Fatalf("more full plans (%d) than deltas (%d): the scope no longer serves volumes by delta", fulls, deltas)
	}
}
