package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/internal/testenv"
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
func (f *flaky) Ensure(_ context.Context, s *plan.Host) error {
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
	r.Register(OrderNetwork, good)
	r.Register(OrderCompute, bad)
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
	case <-time.After(testenv.Scale(10 * time.Second)):
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
	case <-time.After(testenv.Scale(5 * time.Second)):
		t.Fatal("update not applied")
	}
}

func TestFailingSubsystemKeepsAppliedBack(t *testing.T) {
	r := New(slog.New(slog.DiscardHandler), time.Hour, nil)
	r.Register(OrderStorage, &flaky{name: "storage", failN: 1000})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx, &plan.Snapshot{Epoch: 5}) }()
	// Wait for the second failure (one backoff after the first), not for
	// a wall-clock guess.
	testenv.WaitTrue(t, 10*time.Second, "a second failure", func() bool {
		st := r.Status()
		return len(st) == 1 && st[0].Failures >= 2
	})
	cancel()
	<-done
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
	r.Register(OrderNetwork, rec)
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
	case <-time.After(testenv.Scale(5 * time.Second)):
		t.Fatal("kick did not rerun")
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.runs != 2 {
		t.Fatalf("runs %d, want 2", rec.runs)
	}
}

// step records the order of Ensure and Prune calls across subsystems.
type step struct {
	name   string
	log    *[]string
	failEn bool
}

func (s step) Name() string { return s.name }
func (s step) Ensure(context.Context, *plan.Host) error {
	*s.log = append(*s.log, "ensure "+s.name)
	if s.failEn {
		return errors.New(s.name + " failed")
	}
	return nil
}
func (s step) Prune(context.Context, *plan.Host) error {
	*s.log = append(*s.log, "prune "+s.name)
	return nil
}

// TestPassOrder: ensure forward by order whatever the registration order,
// prune in reverse; a failing subsystem stops neither the others' Ensure
// nor the pass, but nothing before it in the order prunes (a volume is not
// detached while its domain may still be there).
func TestPassOrder(t *testing.T) {
	for _, tc := range []struct {
		failCompute bool
		want        string
	}{
		{false, "[ensure network ensure storage ensure compute prune compute prune storage prune network]"},
		{true, "[ensure network ensure storage ensure compute]"},
	} {
		var log []string
		r := New(slog.New(slog.DiscardHandler), time.Hour, nil)
		r.Register(OrderCompute, step{name: "compute", log: &log, failEn: tc.failCompute})
		r.Register(OrderNetwork, step{name: "network", log: &log})
		r.Register(OrderStorage, step{name: "storage", log: &log})
		ok, _ := r.pass(context.Background(), &plan.Snapshot{Epoch: 1})
		if got := fmt.Sprint(log); got != tc.want || ok == tc.failCompute {
			t.Errorf("compute fails %v: steps %s ok %v, want %s", tc.failCompute, got, ok, tc.want)
		}
		st := r.Status()
		if st[0].Name != "network" || st[2].Name != "compute" || st[2].OK == tc.failCompute || !st[0].OK {
			t.Errorf("status %+v", st)
		}
	}
}

// TestOnQuietOncePerBurst: OnQuiet runs once QuietAfter has passed after
// the last pass, and not again while no pass runs.
func TestOnQuietOncePerBurst(t *testing.T) {
	r := New(slog.New(slog.DiscardHandler), time.Hour, nil)
	r.Register(OrderNetwork, &flaky{name: "network"})
	applied := make(chan time.Time, 10) // when each pass ended
	quiet := make(chan time.Time, 10)
	r.OnApplied = func(uint64) { applied <- time.Now() }
	r.OnQuiet, r.QuietAfter = func() { quiet <- time.Now() }, 100*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, &plan.Snapshot{Epoch: 1})
	for _, epoch := range []uint64{1, 2} {
		if epoch > 1 {
			r.Update(&plan.Snapshot{Epoch: epoch})
		}
		var passed time.Time
		select {
		case passed = <-applied:
		case <-time.After(testenv.Scale(10 * time.Second)):
			t.Fatalf("epoch %d never applied", epoch)
		}
		select {
		case at := <-quiet:
			if at.Before(passed) {
				t.Fatalf("epoch %d: OnQuiet ran before the pass ended", epoch)
			}
		case <-time.After(testenv.Scale(10 * time.Second)):
			t.Fatalf("epoch %d: OnQuiet never ran after the pass", epoch)
		}
		select {
		case <-quiet:
			t.Fatalf("epoch %d: OnQuiet ran again without a pass", epoch)
		case <-time.After(5 * r.QuietAfter):
		}
	}
}
