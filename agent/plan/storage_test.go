package plan

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// storageSource serves a host plan (one network) or, when asked as a
// storage host would, the storage plan (a volume besides); it records
// the epochs asked from.
type storageSource struct {
	storage bool
	asked   []uint64
}

func (s *storageSource) Plan(_ context.Context, _ string, since uint64, _ string, _ time.Duration) (api.Plan, error) {
	s.asked = append(s.asked, since)
	if since == 5 {
		return api.Plan{Epoch: 5, Storage: s.storage}, nil
	}
	p := api.Plan{Epoch: 5, Full: true, Storage: s.storage, Resources: []api.Resource{{Kind: "network", Project: "p", Name: "n", Epoch: 1}}}
	if s.storage {
		p.Resources = append(p.Resources, api.Resource{Kind: "volume", Project: "p", Name: "v", Epoch: 2})
	}
	return p, nil
}

// TestWatcherTakesTheStoragePlan: a host turned into a storage host with
// a saved host plan asks for a full plan once (deltas onto a plan without
// every volume would never bring the volumes it lacks), then waits by
// deltas as before; deltas of the other kind are refused.
func TestWatcherTakesTheStoragePlan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plan.json")
	log := slog.New(slog.DiscardHandler)
	src := &storageSource{}
	w, err := NewWatcher("h1", src, path, time.Second, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := w.Step(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if s := w.Snapshot(); s.Storage || len(s.Resources) != 1 {
		t.Fatalf("host plan: %+v", s)
	}
	// Restarted as a storage host, from the saved host plan at epoch 5.
	src = &storageSource{storage: true}
	w, err = NewWatcher("h1", src, path, time.Second, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Storage = true
	for range 2 {
		if err := w.Step(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if s := w.Snapshot(); !s.Storage || len(s.Resources) != 2 {
		t.Fatalf("storage plan: %+v", s)
	}
	if len(src.asked) != 2 || src.asked[0] != 0 || src.asked[1] != 5 {
		t.Fatalf("asked from epochs %v, want [0 5]", src.asked)
	}
	st := NewState()
	if err := st.Apply(api.Plan{Epoch: 1, Deltas: []api.Delta{{Epoch: 1}}, Storage: true}); err == nil {
		t.Fatal("storage deltas applied onto a host plan")
	}
}
