package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/config"
	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/agent/reconcile"
	"github.com/strata-infra/strata/internal/testenv"
)

type countingReconciler struct{ passes atomic.Int32 }

func (c *countingReconciler) Name() string { return "count" }
func (c *countingReconciler) Ensure(context.Context, *plan.Host) error {
	c.passes.Add(1)
	return nil
}

// TestResyncRunsAPassNow: with the periodic resync an hour away, Resync
// makes the runner reconcile the held plan again at once.
func TestResyncRunsAPassNow(t *testing.T) {
	dir := t.TempDir()
	var cfg config.Config
	cfg.SetDefaults()
	cfg.TokenFile, cfg.StateDir, cfg.Resync = filepath.Join(dir, "token"), filepath.Join(dir, "state"), time.Hour
	cfg.Coordinator = config.URLs{"http://127.0.0.1:1"} // never reached; plain HTTP is allowed to loopback
	if err := os.WriteFile(cfg.TokenFile, []byte("t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(&cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	rec := &countingReconciler{}
	a.Runner().Register(reconcile.OrderNetwork, rec)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Runner().Run(ctx, a.watcher.Snapshot())
	waitPasses := func(n int32) {
		t.Helper()
		deadline := time.Now().Add(testenv.Scale(10 * time.Second))
		for rec.passes.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d passes, want %d", rec.passes.Load(), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitPasses(1) // the first pass at start
	a.Resync()
	waitPasses(2)
	a.Resync()
	waitPasses(3)
}
