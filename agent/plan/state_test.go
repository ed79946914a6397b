package plan

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

func res(name string, epoch uint64) api.Resource {
	return api.Resource{Kind: "project", Name: name, Epoch: epoch, Spec: []byte(`{}`)}
}

func put(r api.Resource) api.Change { return api.Change{Op: api.OpPut, Resource: r} }
func del(r api.Resource) api.Change { return api.Change{Op: api.OpDelete, Resource: r} }

func TestApplyDeltasFullAndFencing(t *testing.T) {
	s := NewState()
	steps := []struct {
		name    string
		plan    api.Plan
		wantErr error
		epoch   uint64
		names   []string
	}{
		{"full", api.Plan{Epoch: 2, Full: true, Resources: []api.Resource{res("a", 1), res("b", 2)}}, nil, 2, []string{"a", "b"}},
		{"deltas", api.Plan{Epoch: 4, Deltas: []api.Delta{{Epoch: 3, Changes: []api.Change{put(res("c", 3))}}, {Epoch: 4, Changes: []api.Change{del(res("a", 4))}}}}, nil, 4, []string{"b", "c"}},
		{"gap refused", api.Plan{Epoch: 7, Deltas: []api.Delta{{Epoch: 6, Changes: []api.Change{put(res("x", 6))}}}}, nil, 4, []string{"b", "c"}},
		{"stale refused", api.Plan{Epoch: 3, Full: true, Resources: []api.Resource{res("old", 1)}}, ErrStale, 4, []string{"b", "c"}},
		{"empty delta moves epoch", api.Plan{Epoch: 5, Deltas: []api.Delta{{Epoch: 5}}}, nil, 5, []string{"b", "c"}},
	}
	for _, st := range steps {
		err := s.Apply(st.plan)
		switch {
		case st.name == "gap refused" && err == nil:
			t.Fatalf("%s: want an error", st.name)
		case st.wantErr != nil && !errors.Is(err, st.wantErr):
			t.Fatalf("%s: err %v, want %v", st.name, err, st.wantErr)
		case st.wantErr == nil && st.name != "gap refused" && err != nil:
			t.Fatalf("%s: %v", st.name, err)
		}
		snap := s.Snapshot()
		var names []string
		for _, r := range snap.Resources {
			names = append(names, r.Name)
		}
		if snap.Epoch != st.epoch || len(names) != len(st.names) {
			t.Fatalf("%s: epoch %d names %v, want %d %v", st.name, snap.Epoch, names, st.epoch, st.names)
		}
		for i := range names {
			if names[i] != st.names[i] {
				t.Fatalf("%s: names %v, want %v", st.name, names, st.names)
			}
		}
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plan.json")
	s := NewState()
	if err := s.Apply(api.Plan{Epoch: 9, Full: true, Resources: []api.Resource{res("a", 9)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Epoch != 9 || len(got.Resources) != 1 {
		t.Fatalf("loaded %+v", got)
	}
	empty, err := Load(filepath.Join(t.TempDir(), "missing.json"))
	if err != nil || empty.Epoch != 0 {
		t.Fatalf("missing file: %+v %v", empty, err)
	}
}

// TestApplyAcrossARestore: within one history a plan never goes back; a
// full plan of a new history (the coordinator's store was restored)
// replaces everything; deltas never cross histories.
func TestApplyAcrossARestore(t *testing.T) {
	s := NewState()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Apply(api.Plan{Epoch: 5, Full: true, History: "h-old", Resources: []api.Resource{res("a", 1), res("late", 5)}}))
	if err := s.Apply(api.Plan{Epoch: 3, Full: true, History: "h-old", Resources: []api.Resource{res("a", 1)}}); !errors.Is(err, ErrStale) {
		t.Fatalf("older copy of the same history: %v, want ErrStale", err)
	}
	if err := s.Apply(api.Plan{Epoch: 6, History: "h-new", Deltas: []api.Delta{{Epoch: 6}}}); err == nil {
		t.Fatal("deltas of another history were applied")
	}
	must(s.Apply(api.Plan{Epoch: 6, Full: true, History: "h-new", Resources: []api.Resource{res("a", 1)}}))
	if s.History != "h-new" || s.Epoch != 6 || len(s.Resources) != 1 {
		t.Fatalf("after the restore: %+v", s)
	}
	must(s.Apply(api.Plan{Epoch: 7, History: "h-new", Deltas: []api.Delta{{Epoch: 7, Changes: []api.Change{put(res("b", 7))}}}}))
	if s.Epoch != 7 || len(s.Resources) != 2 {
		t.Fatalf("delta after the restore: %+v", s)
	}
}

func TestJitterSpreadsRetries(t *testing.T) {
	const d = time.Second
	seen := map[time.Duration]bool{}
	for range 200 {
		j := Jitter(d)
		if j < d/2 || j >= 3*d/2 {
			t.Fatalf("Jitter(%v) = %v, outside [%v, %v)", d, j, d/2, 3*d/2)
		}
		seen[j.Truncate(100*time.Millisecond)] = true
	}
	// 200 draws over ten 100 ms buckets: all but a vanishing chance hit most.
	if len(seen) < 8 {
		t.Fatalf("200 retries fell in only %d of 10 buckets: not spread", len(seen))
	}
}
