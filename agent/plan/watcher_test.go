package plan

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// deltaSource answers each poll with one delta adding a resource.
type deltaSource struct{}

func (d *deltaSource) Plan(_ context.Context, _ string, since uint64, _ string, _ time.Duration) (api.Plan, error) {
	r := api.Resource{Kind: "network", Project: "p", Name: fmt.Sprintf("n%d", since+1)}
	return api.Plan{Epoch: since + 1, Deltas: []api.Delta{{Epoch: since + 1, Changes: []api.Change{{Op: api.OpPut, Resource: r}}}}}, nil
}

// TestSnapshotWhileApplying: status reports read the plan from another
// goroutine while the watcher applies deltas (run with -race; it used to
// crash the agent with a concurrent map iteration and write).
func TestSnapshotWhileApplying(t *testing.T) {
	w, err := NewWatcher("h1", &deltaSource{}, filepath.Join(t.TempDir(), "plan.json"), time.Second, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			if err := w.Step(context.Background()); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var last uint64
	for {
		select {
		case <-done:
			if s := w.Snapshot(); s.Epoch != 200 || len(s.Resources) != 200 {
				t.Fatalf("final snapshot at epoch %d with %d resources", s.Epoch, len(s.Resources))
			}
			return
		default:
		}
		s := w.Snapshot()
		if s.Epoch < last || len(s.Resources) != int(s.Epoch) {
			t.Fatalf("snapshot at epoch %d (after %d) with %d resources", s.Epoch, last, len(s.Resources))
		}
		last = s.Epoch
	}
}
