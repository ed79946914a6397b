package plan

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// Source is the coordinator side of a watch.
type Source interface {
	// Plan long-polls host's plan after epoch since of history.
	Plan(ctx context.Context, host string, since uint64, history string, wait time.Duration) (api.Plan, error)
}

// Watcher long-polls the host's plan, keeps State current and saved, and
// publishes a Snapshot after every change.
type Watcher struct {
	Host   string
	Source Source
	Path   string // where State is saved
	Wait   time.Duration
	Log    *slog.Logger
	// OnChange is called with every new snapshot, from the Run goroutine.
	OnChange func(*Snapshot)
	// Storage asks for the storage plan (the host runs the storage
	// controller); the Source must then ask with ?storage=true. A saved
	// plan of the other kind is replaced by a full plan first.
	Storage bool

	state      *State
	askedFull  bool // a full plan was asked for because Storage changed
	wake       chan struct{}
	synced     atomic.Bool              // a watch has succeeded since start
	coordEpoch atomic.Uint64            // the coordinator's epoch at the last successful watch
	cur        atomic.Pointer[Snapshot] // the state's latest snapshot, for other goroutines
	FullSyncs  atomic.Uint64
	DeltaSyncs atomic.Uint64
	LastError  atomic.Pointer[string]
}

// NewWatcher starts from the state saved at path.
func NewWatcher(host string, src Source, path string, wait time.Duration, log *slog.Logger, onChange func(*Snapshot)) (*Watcher, error) {
	st, err := LoadOrSetAside(path, log)
	if err != nil {
		return nil, err
	}
	w := &Watcher{Host: host, Source: src, Path: path, Wait: wait, Log: log, OnChange: onChange, state: st, wake: make(chan struct{}, 1)}
	w.cur.Store(st.Snapshot())
	return w, nil
}

// Wake cuts a retry's back-off short: the caller has seen the coordinator
// come back (gossip), so the next watch goes out now, not in up to 30 s.
func (w *Watcher) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// CoordinatorEpoch is the coordinator's epoch at the last successful
// watch; ok is false until one has succeeded since start.
func (w *Watcher) CoordinatorEpoch() (epoch uint64, ok bool) {
	return w.coordEpoch.Load(), w.synced.Load()
}

// Snapshot returns the current plan. It is safe from any goroutine: the
// state itself is Run's alone (a status report reading it while a delta
// applies crashed the agent with a concurrent map access).
func (w *Watcher) Snapshot() *Snapshot {
	if s := w.cur.Load(); s != nil {
		return s
	}
	return w.state.Snapshot()
}

// wakeSpread bounds the random pause before re-polling a coordinator
// that came back.
const wakeSpread = 250 * time.Millisecond

// Jitter spreads a back-off over [d/2, 3d/2), so that agents that failed
// together (a coordinator restart) do not retry together.
func Jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}

// Run watches until ctx ends. Errors back off from 500 ms to 30 s; Wake
// ends a back-off at once.
func (w *Watcher) Run(ctx context.Context) {
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		err := w.Step(ctx)
		if err == nil {
			backoff = 500 * time.Millisecond
			w.LastError.Store(nil)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		msg := err.Error()
		w.LastError.Store(&msg)
		wait := Jitter(backoff)
		w.Log.Warn("plan watch failed", "err", err, "retry_in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
			backoff = min(backoff*2, 30*time.Second)
		case <-w.wake:
			t.Stop()
			// Every agent hears the coordinator return at once: a short
			// random pause keeps a fleet from re-polling in lockstep.
			pause := time.Duration(rand.Int64N(int64(wakeSpread)))
			w.Log.Info("coordinator is back: watching again", "after", pause.Round(time.Millisecond))
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			backoff = 500 * time.Millisecond
		}
	}
}

// Step does one long-poll and applies its answer.
func (w *Watcher) Step(ctx context.Context) error {
	since := w.state.Epoch
	if w.state.Storage != w.Storage && !w.askedFull {
		// A full plan of the kind this host needs, asked once: a
		// coordinator that serves no storage plan is not asked in a loop.
		since, w.askedFull = 0, true
	}
	p, err := w.Source.Plan(ctx, w.Host, since, w.state.History, w.Wait)
	if err != nil {
		return err
	}
	if p.Full && p.History != "" && w.state.History != "" && p.History != w.state.History {
		w.Log.Warn("coordinator store was restored from a backup: taking its full plan", "history", p.History,
			"previous_history", w.state.History, "epoch", p.Epoch, "previous_epoch", w.state.Epoch)
	}
	if !p.Full && p.Epoch == w.state.Epoch && p.Storage == w.state.Storage {
		w.caughtUp(p.Epoch)
		return nil // long-poll timed out with nothing new
	}
	if err := w.state.Apply(p); err != nil {
		if errors.Is(err, ErrStale) {
			// Fencing: keep what we have and keep asking; an operator
			// must look at a coordinator that went back in time.
			w.Log.Error("refusing plan older than the applied one", "err", err)
			time.Sleep(time.Second)
		}
		return err
	}
	if p.Full {
		w.FullSyncs.Add(1)
	} else {
		w.DeltaSyncs.Add(1)
	}
	if err := w.state.Save(w.Path); err != nil {
		return err
	}
	w.Log.Debug("plan updated", "epoch", p.Epoch, "full", p.Full, "deltas", len(p.Deltas))
	snap := w.state.Snapshot()
	w.cur.Store(snap)
	w.caughtUp(p.Epoch)
	if w.OnChange != nil {
		w.OnChange(snap)
	}
	return nil
}

func (w *Watcher) caughtUp(epoch uint64) {
	w.coordEpoch.Store(epoch)
	w.synced.Store(true)
}
