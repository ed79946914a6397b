package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/plan"
)

// flaky fails its first n runs.
type flaky struct {
	mu     sync.Mutex
	name   string
	failN  int
	runs   int
	epochs []uint64
}

func (f *flaky) Name() string { return f.name }
func (f *flaky) Reconcile(_ context.Context, s *plan.Snapshot) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs++
	f.epochs = append(f.epochs, s.Epoch)
	if f.runs <= f.failN {
		return errors.New("device busy")
	}
	return nil
}

func TestRunnerRetriesAndReportsApplied(t *testing.T) {
	r := New(slog.New(slog.DiscardHandler), time.Hour, nil)
	good := &flaky{name: "network"}
	bad := &flaky{name: "compute", failN: 2}
	r.Register(good)
	r.Register(bad)
	applied := make(chan uint64, 10)
	r.OnApplied = func(e uint64) { applied <- e }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, &plan.Snapshot{Epoch: 3})

	// Two failures back off 0.5 s then 1 s; the third pass succeeds.
	select {
	case e := <-applied:
		if e != 3 {
			t.Fatalf("applied %d, want 3", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("never applied; status %+v", r.Status())
	}
	st := r.Status()
	if len(st) != 2 || !st[0].OK || !st[1].OK || st[1].Failures != 0 {
		t.Fatalf("status after recovery: %+v", st)
	}
	if r.Applied() != 3 {
		t.Fatalf("Applied() = %d", r.Applied())
	}
	r.Update(&plan.Snapshot{Epoch: 4})
	select {
	case e := <-applied:
		if e != 4 {
			t.Fatalf("applied %d, want 4", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("update not applied")
	}
}

func TestFailingSubsystemKeepsAppliedBack(t *testing.T) {
	r := New(slog.New(slog.DiscardHandler), time.Hour, nil)
	r.Register(&flaky{name: "storage", failN: 1000})
	ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
	defer cancel()
	r.Run(ctx, &plan.Snapshot{Epoch: 5})
	st := r.Status()
	if r.Applied() != 0 || st[0].OK || st[0].Error != "device busy" || st[0].Failures < 2 {
		t.Fatalf("applied %d status %+v", r.Applied(), st)
	}
}

func TestBackoffDoublesToCap(t *testing.T) {
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}
	for i, w := range want {
		if got := backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := backoff(100); got != MaxBackoff {
		t.Errorf("backoff(100) = %s, want %s", got, MaxBackoff)
	}
}

func TestKickRerunsOnTheCurrentPlan(t *testing.T) {
	r := New(slog.New(slog.DiscardHandler), time.Hour, nil)
	rec := &flaky{name: "network"}
	r.Register(rec)
	applied := make(chan uint64, 10)
	r.OnApplied = func(e uint64) { applied <- e }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, &plan.Snapshot{Epoch: 2})
	<-applied
	r.Kick()
	select {
	case e := <-applied:
		if e != 2 {
			t.Fatalf("kick applied epoch %d", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("kick did not rerun")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.runs != 2 {
		t.Fatalf("runs %d, want 2", rec.runs)
	}
}
