package plan

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// downSource fails while down is set, as a stopped coordinator does.
type downSource struct {
	down  atomic.Bool
	calls atomic.Int32
	last  atomic.Int64 // unix nanos of the last call
}

func (d *downSource) Plan(context.Context, string, uint64, string, time.Duration) (api.Plan, error) {
	d.calls.Add(1)
	d.last.Store(time.Now().UnixNano())
	if d.down.Load() {
		return api.Plan{}, errors.New("connection refused")
	}
	return api.Plan{Epoch: 4, Full: true, History: "h"}, nil
}

// TestWakeEndsTheBackoff: after failures have grown the back-off to
// seconds, Wake (gossip saw the coordinator again) makes the next watch
// go out at once, and the watcher is caught up on the coordinator's epoch.
func TestWakeEndsTheBackoff(t *testing.T) {
	src := &downSource{}
	src.down.Store(true)
	w, err := NewWatcher("h1", src, filepath.Join(t.TempDir(), "plan.json"), time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// 0.5 + 1 + 2 s of back-off: the wait after the fourth failure is 4 s.
	deadline := time.Now().Add(10 * time.Second)
	for src.calls.Load() < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if src.calls.Load() < 4 {
		t.Fatalf("%d watches in 10 s", src.calls.Load())
	}
	if _, ok := w.CoordinatorEpoch(); ok {
		t.Fatal("caught up while the coordinator is down")
	}
	src.down.Store(false)
	woke := time.Now()
	w.Wake()
	for {
		if e, ok := w.CoordinatorEpoch(); ok && e == 4 {
			break
		}
		if time.Since(woke) > 2*time.Second {
			t.Fatalf("not caught up %v after Wake (back-off was 4 s)", time.Since(woke))
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("caught up %v after Wake", time.Since(woke).Round(time.Millisecond))
}
