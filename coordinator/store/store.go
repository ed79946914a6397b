// Package store keeps the coordinator's desired state: resources, the
// cluster epoch and the retained delta log, with tokens and host reports
// kept apart as observed state. Every commit that changes anything bumps
// the epoch by one and appends one delta, written by the backend (bbolt
// for one coordinator, etcd for many) in one transaction, so a crash
// never splits them. The state is held in memory: transactions read it
// there, and plans are served from it.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/google/btree"

	"github.com/strata-infra/strata/pkg/api"
)

// ErrNotFound is returned when a resource or token does not exist.
var ErrNotFound = errors.New("not found")

// DefaultRetainDeltas is how many deltas are kept for agents to catch up by;
// an agent further behind gets a full plan.
const DefaultRetainDeltas = 10000

// Options tune a store.
type Options struct {
	RetainDeltas int
	// NoSync skips fsync; only for benchmarks' baselines and tests.
	NoSync bool
}

// Store is the coordinator's view of the desired state over a backend.
type Store struct {
	backend Backend
	retain  int

	mu      sync.Mutex
	tree    *btree.BTreeG[item] // resources by key; replaced, never written, once published
	epoch   uint64
	history string
	deltas  []storedDelta // retained, oldest first
	changed chan struct{} // closed and replaced on every epoch bump
	// fenceReported is closed and replaced when a report on a fence
	// is stored here.
	fenceReported chan struct{}

	// commitMu orders commits (and deltas from other coordinators) with
	// their observers' calls.
	commitMu  sync.Mutex
	observers []func(epoch uint64, changes []api.Change)
	// epochObservers are called for every epoch, changed or not.
	epochObservers []func(epoch uint64, changes []api.Change)
}

// item is one resource as stored: its key and JSON.
type item struct {
	key string
	val []byte
}

func lessItem(a, b item) bool { return a.key < b.key }

// Observe registers fn to be called after every commit that changed
// something, in commit order, with what it changed (a delete carries the
// resource as it was). In-memory views (the scheduler's) follow the store
// this way instead of reading it per request. Register before serving.
func (s *Store) Observe(fn func(epoch uint64, changes []api.Change)) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.observers = append(s.observers, fn)
}

// ObserveFrom runs init on the current state and registers fn for every
// commit after it, with no commit in between: a view built by init and
// kept by fn never misses one. Unlike Observe, fn is called for commits
// that changed nothing but the epoch too (a jump after a restore).
func (s *Store) ObserveFrom(init func(epoch uint64, tx *Tx) error, fn func(epoch uint64, changes []api.Change)) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	t, epoch := s.snapshot()
	if err := init(epoch, &Tx{s: s, tree: t, epoch: epoch, readOnly: true}); err != nil {
		return err
	}
	s.epochObservers = append(s.epochObservers, fn)
	return nil
}

// Open opens or creates the bbolt store at path.
func Open(path string, opts Options) (*Store, error) {
	b, err := openBolt(path, opts.NoSync)
	if err != nil {
		return nil, err
	}
	s, err := OpenBackend(b, opts)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("load store %q: %w", path, err)
	}
	return s, nil
}

// OpenBackend loads a store from b.
func OpenBackend(b Backend, opts Options) (*Store, error) {
	if opts.RetainDeltas <= 0 {
		opts.RetainDeltas = DefaultRetainDeltas
	}
	l, err := b.Load()
	if err != nil {
		return nil, err
	}
	s := &Store{backend: b, retain: opts.RetainDeltas, changed: make(chan struct{}), fenceReported: make(chan struct{})}
	s.install(l)
	return s, nil
}

// install replaces the in-memory state with a loaded one.
func (s *Store) install(l *Loaded) {
	t := btree.NewG(32, lessItem)
	for _, kv := range l.Resources {
		t.ReplaceOrInsert(item{key: kv.Key, val: kv.Val})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tree, s.history, s.deltas = t, l.History, l.Deltas
	if l.Epoch != s.epoch {
		s.epoch = l.Epoch
		close(s.changed)
		s.changed = make(chan struct{})
	}
}

// Retain is how many deltas the store keeps.
func (s *Store) Retain() int { return s.retain }

// Close closes the backend.
func (s *Store) Close() error { return s.backend.Close() }

// Epoch is the current cluster epoch.
func (s *Store) Epoch() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

// History is the ID of this store's line of epochs; it changes only when
// a backup is restored.
func (s *Store) History() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.history
}

// Changed returns a channel closed at the next epoch bump after the call.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// snapshot is a private copy-on-write view of the current state.
func (s *Store) snapshot() (*btree.BTreeG[item], uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tree.Clone(), s.epoch
}

// publish makes a committed (or followed) state current; wake then tells
// the waiters, once the observers have seen it. Called with commitMu held.
func (s *Store) publish(t *btree.BTreeG[item], d storedDelta) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tree = t
	s.deltas = append(s.deltas, d)
	if d.Epoch > uint64(s.retain) {
		cut := d.Epoch - uint64(s.retain)
		i := sort.Search(len(s.deltas), func(i int) bool { return s.deltas[i].Epoch > cut })
		s.deltas = append([]storedDelta(nil), s.deltas[i:]...)
	}
	if d.Epoch > s.epoch {
		s.epoch = d.Epoch
	}
}

// wake closes the channel of Changed for everyone waiting.
func (s *Store) wake() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.changed)
	s.changed = make(chan struct{})
}

// maxCommitTries bounds how often one transaction is run again when
// other coordinators keep committing first.
const maxCommitTries = 20

// Update runs fn in one read-write transaction. If fn wrote anything, the
// epoch is bumped once and one delta holding every change is appended. It
// returns the epoch after the commit and whether anything changed. When
// another coordinator committed first, the store catches up and runs fn
// again on the new state.
func (s *Store) Update(fn func(tx *Tx) error) (uint64, bool, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	for try := 1; ; try++ {
		epoch, changed, err := s.updateOnce(fn)
		if !errors.Is(err, ErrEpochMoved) || try == maxCommitTries {
			return epoch, changed, err
		}
		if cerr := s.catchUp(); cerr != nil {
			return 0, false, fmt.Errorf("catch up after a concurrent commit: %w", cerr)
		}
	}
}

func (s *Store) updateOnce(fn func(tx *Tx) error) (uint64, bool, error) {
	t, base := s.snapshot()
	tx := &Tx{s: s, tree: t, epoch: base + 1, now: time.Now().UTC()}
	err := fn(tx)
	var d storedDelta
	if err == nil && len(tx.changes) > 0 {
		d, err = s.commit(tx, base)
	}
	changed := err == nil && len(tx.changes) > 0
	if changed {
		s.publish(tx.tree, d)
		s.notify(d)
		s.wake()
	} else {
		for _, undo := range tx.rollback {
			undo()
		}
	}
	// Observed state, best effort: a commit that went in stands even
	// when its placement status cannot be written.
	if perr := s.writePlacements(tx.placements); perr != nil && err == nil && !changed {
		err = perr
	}
	if err != nil {
		return 0, false, err
	}
	if !changed {
		return base, false, nil
	}
	return d.Epoch, true, nil
}

// commit writes tx's changes through the backend.
func (s *Store) commit(tx *Tx, base uint64) (storedDelta, error) {
	d := storedDelta{Epoch: tx.epoch, Base: base, Changes: tx.changes}
	rec, err := s.record(d)
	if err != nil {
		return d, err
	}
	rec.Guard = tx.guard
	// Write each touched key once, as the transaction left it.
	done := map[string]bool{}
	for _, ch := range tx.changes {
		k := string(resourceKey(ch.New.Key()))
		if done[k] {
			continue
		}
		done[k] = true
		if v, ok := tx.tree.Get(item{key: k}); ok {
			rec.Puts = append(rec.Puts, KV{Key: v.key, Val: v.val})
			continue
		}
		rec.Deletes = append(rec.Deletes, k)
		rec.Obs = append(rec.Obs, ObsOp{NS: nsStatus, Key: k + "\x00", Prefix: true})
	}
	return d, s.backend.Commit(rec)
}

// record encodes a delta as a backend commit after base.
func (s *Store) record(d storedDelta) (*Record, error) {
	buf, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode delta %d: %w", d.Epoch, err)
	}
	rec := &Record{Base: d.Base, Epoch: d.Epoch, Delta: buf}
	if d.Epoch > uint64(s.retain) {
		rec.TrimTo = d.Epoch - uint64(s.retain)
	}
	return rec, nil
}

// notify tells the observers what a delta changed. Called with commitMu.
func (s *Store) notify(d storedDelta) {
	if len(d.Changes) == 0 {
		for _, fn := range s.epochObservers {
			fn(d.Epoch, nil)
		}
		return
	}
	observed := make([]api.Change, len(d.Changes))
	for i, ch := range d.Changes {
		observed[i] = api.Change{Op: ch.Op, Resource: ch.New}
		if ch.Op == api.OpDelete && ch.Prev != nil {
			observed[i].Resource = *ch.Prev
		}
	}
	for _, fn := range s.observers {
		fn(d.Epoch, observed)
	}
	for _, fn := range s.epochObservers {
		fn(d.Epoch, observed)
	}
}

// catchUp brings the in-memory state up to the backend's after another
// coordinator committed. Called with commitMu held.
func (s *Store) catchUp() error {
	if f, ok := s.backend.(follower); ok {
		return f.catchUp(s)
	}
	// A backend nobody else writes to has nothing to catch up on: a
	// moved epoch is a bug, not a race; reload to be sure.
	l, err := s.backend.Load()
	if err != nil {
		return err
	}
	s.reload(l)
	return nil
}

// follower is a backend others commit to too (etcd).
type follower interface {
	catchUp(s *Store) error
}

// applyDelta applies a delta committed by another coordinator on top of
// the current state. It reports false when the delta does not follow the
// current epoch (the caller reloads). Called with commitMu held.
func (s *Store) applyDelta(d storedDelta) bool {
	t, epoch := s.snapshot()
	if d.Epoch <= epoch {
		return true // seen already
	}
	if d.Base != epoch {
		return false
	}
	for _, ch := range d.Changes {
		k := string(resourceKey(ch.New.Key()))
		if ch.Op == api.OpDelete {
			t.Delete(item{key: k})
			continue
		}
		buf, err := json.Marshal(ch.New)
		if err != nil {
			return false
		}
		t.ReplaceOrInsert(item{key: k, val: buf})
	}
	s.publish(t, d)
	s.notify(d)
	s.wake()
	return true
}

// reload replaces the in-memory state with the backend's whole state,
// telling observers what differs. Called with commitMu held.
func (s *Store) reload(l *Loaded) {
	old, _ := s.snapshot()
	s.install(l)
	now, epoch := s.snapshot()
	var changes []storedChange
	seen := map[string]bool{}
	now.Ascend(func(it item) bool {
		seen[it.key] = true
		if o, ok := old.Get(it); !ok || string(o.val) != string(it.val) {
			var r api.Resource
			if json.Unmarshal(it.val, &r) == nil {
				changes = append(changes, storedChange{Op: api.OpPut, New: r})
			}
		}
		return true
	})
	old.Ascend(func(it item) bool {
		if !seen[it.key] {
			var r api.Resource
			if json.Unmarshal(it.val, &r) == nil {
				changes = append(changes, storedChange{Op: api.OpDelete, New: r, Prev: &r})
			}
		}
		return true
	})
	s.notify(storedDelta{Epoch: epoch, Changes: changes})
}

// View runs fn in a read-only transaction over a consistent snapshot.
func (s *Store) View(fn func(tx *Tx) error) error {
	t, epoch := s.snapshot()
	return fn(&Tx{s: s, tree: t, epoch: epoch, readOnly: true})
}

func resourceKey(k api.Key) []byte {
	return []byte(k.Kind + "\x00" + k.Project + "\x00" + k.Name)
}

// storedChange is a delta entry as kept: the previous version rides along
// so a plan filter can turn a move between hosts into a delete for the
// host that lost the resource.
type storedChange struct {
	Op   api.Op        `json:"op"`
	New  api.Resource  `json:"new"`
	Prev *api.Resource `json:"prev,omitempty"`
}

type storedDelta struct {
	Epoch uint64 `json:"epoch"`
	// Base is the epoch the delta was committed on (Epoch-1, or less
	// for an epoch jump), so a follower can tell a gap from a jump.
	Base    uint64         `json:"base,omitempty"`
	Changes []storedChange `json:"changes"`
}

func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return string(a) == string(b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

// Size is the backend's size in bytes (the bbolt file; 0 when the
// backend does not say).
func (s *Store) Size() int64 {
	if b, ok := s.backend.(interface{ size() int64 }); ok {
		return b.size()
	}
	return 0
}
