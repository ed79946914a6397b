package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
)

// partial applies everything but resource "bad", which fails on its own
// backoff: it is tried only when due, as a subsystem with a
// ResourceBackoff does.
type partial struct {
	mu     sync.Mutex
	b      *ResourceBackoff
	bad    api.Key
	tries  []time.Time // when bad was tried
	passes int
}

func (p *partial) Name() string { return "network" }
func (p *partial) Ensure(_ context.Context, h *plan.Host) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.passes++
	now := time.Now()
	msg, held := p.b.Held(p.bad, 1, now)
	if !held {
		p.tries = append(p.tries, now)
		msg = "link in the way"
		p.b.Failed(p.bad, 1, msg, now)
	}
	p.b.Keep(map[api.Key]bool{p.bad: true})
	return &ResourceFailures{Err: errors.New(msg), RetryIn: p.b.Next(now)}
}

// TestResourceFailureDoesNotHoldTheEpoch: a subsystem failing on one
// resource still applies each new plan at once (the applied epoch moves,
// the subsystem is OK with the resource's error noted), and the failing
// resource is retried on its own doubling backoff, not on every pass.
func TestResourceFailureDoesNotHoldTheEpoch(t *testing.T) {
	r := New(slog.New(slog.DiscardHandler), time.Hour, nil)
	p := &partial{b: NewResourceBackoff(), bad: api.Key{Kind: "router", Project: "a", Name: "rt"}}
	r.Register(OrderNetwork, p)
	applied := make(chan uint64, 100)
	r.OnApplied = func(e uint64) { applied <- e }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, &plan.Snapshot{Epoch: 1})
	for e := uint64(1); e <= 5; e++ {
		if e > 1 {
			r.Update(&plan.Snapshot{Epoch: e})
		}
		select {
		case got := <-applied:
			for got < e {
				got = <-applied // a retry pass of the epoch before
			}
		case <-time.After(testenv.Scale(5 * time.Second)):
			t.Fatalf("epoch %d not applied while one resource fails; status %+v", e, r.Status())
		}
	}
	if r.Applied() != 5 {
		t.Fatalf("Applied() = %d, want 5", r.Applied())
	}
	if st := r.Status(); !st[0].OK || st[0].Error != "link in the way" {
		t.Fatalf("status %+v: want OK with the resource's error", st)
	}
	// Retries on the resource's own schedule: 0.5 s, 1 s, 2 s apart.
	testenv.WaitTrue(t, 10*time.Second, "three retries of the failing resource", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.tries) >= 4
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 1; i < 4; i++ {
		gap, want := p.tries[i].Sub(p.tries[i-1]), backoff(i)
		if gap < want {
			t.Errorf("retry %d came %s after the one before, want at least %s", i, gap, want)
		}
	}
	if p.passes <= len(p.tries) {
		t.Errorf("%d passes, %d tries of the failing resource: new plans should have passed it by", p.passes, len(p.tries))
	}
}

func TestResourceBackoffPerResource(t *testing.T) {
	b := NewResourceBackoff()
	now := time.Unix(1000, 0)
	a, c := api.Key{Kind: "router", Name: "a"}, api.Key{Kind: "router", Name: "c"}
	b.Failed(a, 7, "busy", now)
	b.Failed(a, 7, "busy", now)
	if msg, held := b.Held(a, 7, now.Add(900*time.Millisecond)); !held || msg != "busy" {
		t.Fatalf("a after 2 failures held=%v msg=%q at +0.9s, want held for 1 s", held, msg)
	}
	if _, held := b.Held(a, 7, now.Add(time.Second)); held {
		t.Fatal("a still held once due")
	}
	if _, held := b.Held(a, 8, now); held {
		t.Fatal("a new spec of a must be tried at once")
	}
	if _, held := b.Held(c, 1, now); held {
		t.Fatal("c never failed but is held")
	}
	if d := b.Next(now); d != time.Second {
		t.Fatalf("Next = %s, want 1s", d)
	}
	b.Failed(a, 8, "busy", now)
	if n := b.Failures(a); n != 1 {
		t.Fatalf("a new spec restarts the schedule: %d failures", n)
	}
	b.Keep(map[api.Key]bool{})
	if b.Next(now) != 0 || b.Failures(a) != 0 {
		t.Fatal("Keep(none) left a retry")
	}
}
