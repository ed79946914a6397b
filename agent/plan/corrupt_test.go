package plan

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// fullSource answers every watch with the full plan at its epoch.
type fullSource struct{ plan api.Plan }

func (f fullSource) Plan(_ context.Context, _ string, since uint64, _ string, _ time.Duration) (api.Plan, error) {
	if since == f.plan.Epoch {
		return api.Plan{Epoch: since}, nil
	}
	return f.plan, nil
}

// TestCorruptPlanRecovers: an unreadable plan file does not stop the
// agent: it is set aside (kept, renamed) with a log line, and the next
// watch is a full plan that is saved in its place.
func TestCorruptPlanRecovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "plan.json")
	garbage := []byte(`{"epoch": 7, "resources": {"proj`) // cut mid-write
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	src := fullSource{api.Plan{Epoch: 9, Full: true, Resources: []api.Resource{res("a", 3), res("b", 9)}}}
	var got *Snapshot
	w, err := NewWatcher("h1", src, path, time.Second, log, func(s *Snapshot) { got = s })
	if err != nil {
		t.Fatalf("a corrupt plan file must not stop the agent: %v", err)
	}
	if !strings.Contains(logs.String(), "saved plan is unreadable") {
		t.Errorf("no log line about the corrupt plan:\n%s", logs.String())
	}
	aside, _ := filepath.Glob(path + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("set-aside files %v, want one", aside)
	}
	if b, _ := os.ReadFile(aside[0]); !bytes.Equal(b, garbage) {
		t.Errorf("set-aside file holds %q, want the original bytes", b)
	}
	if w.Snapshot().Epoch != 0 {
		t.Fatalf("starts at epoch %d, want 0 (ask for a full plan)", w.Snapshot().Epoch)
	}
	if err := w.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got == nil || got.Epoch != 9 || len(got.Resources) != 2 || w.FullSyncs.Load() != 1 {
		t.Fatalf("after one watch: snapshot %+v, full syncs %d", got, w.FullSyncs.Load())
	}
	saved, err := Load(path)
	if err != nil || saved.Epoch != 9 || len(saved.Resources) != 2 {
		t.Fatalf("saved plan: %+v, %v", saved, err)
	}
}
