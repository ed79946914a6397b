// Package store keeps the coordinator's desired state in bbolt: resources,
// the cluster epoch, the retained delta log, tokens and host reports.
// Every commit that changes anything bumps the epoch by one and appends one
// delta, in the same bbolt transaction, so a crash never splits them.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/strata-infra/strata/pkg/api"
)

var (
	bucketMeta      = []byte("meta")
	bucketResources = []byte("resources")
	bucketDeltas    = []byte("deltas")
	bucketTokens    = []byte("tokens")
	bucketReports   = []byte("host_reports")
	bucketStatus    = []byte("resource_status")

	keyEpoch = []byte("epoch")
	// keyHistory names this store's line of epochs. A restore starts a new
	// one, so agents can tell a restore (new history: take its full plan)
	// from an older copy of the same history (refuse it).
	keyHistory = []byte("history")
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

// Store is the coordinator's embedded database.
type Store struct {
	db      *bolt.DB
	retain  int
	history string

	mu      sync.Mutex
	epoch   uint64
	changed chan struct{} // closed and replaced on every epoch bump

	// commitMu orders commits with their observers' calls.
	commitMu  sync.Mutex
	observers []func(epoch uint64, changes []api.Change)
}

// Observe registers fn to be called after every commit that changed
// something, in commit order, with what it changed (a delete carries the
// resource as it was). In-memory views (the scheduler's) follow the store
// this way instead of reading it per request. Register before serving.
func (s *Store) Observe(fn func(epoch uint64, changes []api.Change)) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.observers = append(s.observers, fn)
}

// Open opens or creates the store at path.
func Open(path string, opts Options) (*Store, error) {
	db, err := openChecked(path, &bolt.Options{Timeout: 5 * time.Second, NoSync: opts.NoSync})
	if err != nil {
		return nil, err
	}
	if opts.RetainDeltas <= 0 {
		opts.RetainDeltas = DefaultRetainDeltas
	}
	s := &Store{db: db, retain: opts.RetainDeltas, changed: make(chan struct{})}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketResources, bucketDeltas, bucketTokens, bucketReports, bucketStatus} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		s.epoch = readEpoch(tx)
		s.history = string(tx.Bucket(bucketMeta).Get(keyHistory))
		if s.history == "" {
			s.history = newHistory()
			return tx.Bucket(bucketMeta).Put(keyHistory, []byte(s.history))
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store %q: %w", path, err)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Epoch is the current cluster epoch.
func (s *Store) Epoch() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

// Changed returns a channel closed at the next epoch bump after the call.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *Store) bumped(epoch uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch > s.epoch {
		s.epoch = epoch
		close(s.changed)
		s.changed = make(chan struct{})
	}
}

// Update runs fn in one read-write transaction. If fn wrote anything, the
// epoch is bumped once and one delta holding every change is appended. It
// returns the epoch after the commit and whether anything changed.
func (s *Store) Update(fn func(tx *Tx) error) (uint64, bool, error) {
	var epoch uint64
	var changed bool
	var tx *Tx
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	err := s.db.Update(func(btx *bolt.Tx) error {
		tx = &Tx{btx: btx, epoch: readEpoch(btx) + 1, now: time.Now().UTC()}
		if err := fn(tx); err != nil {
			return err
		}
		if len(tx.changes) == 0 {
			epoch = tx.epoch - 1
			return nil
		}
		if err := tx.commitDelta(s.retain); err != nil {
			return err
		}
		epoch, changed = tx.epoch, true
		return nil
	})
	if (err != nil || !changed) && tx != nil {
		for _, undo := range tx.rollback {
			undo()
		}
	}
	if tx != nil {
		// Observed state, best effort: a commit that went in stands even
		// when its placement status cannot be written.
		if perr := s.writePlacements(tx.placements); perr != nil && err == nil && !changed {
			err = perr
		}
	}
	if err != nil {
		return 0, false, err
	}
	if changed {
		observed := make([]api.Change, len(tx.changes))
		for i, ch := range tx.changes {
			observed[i] = api.Change{Op: ch.Op, Resource: ch.New}
			if ch.Op == api.OpDelete && ch.Prev != nil {
				observed[i].Resource = *ch.Prev
			}
		}
		for _, fn := range s.observers {
			fn(epoch, observed)
		}
		s.bumped(epoch)
	}
	return epoch, changed, nil
}

// View runs fn in a read-only transaction.
func (s *Store) View(fn func(tx *Tx) error) error {
	return s.db.View(func(btx *bolt.Tx) error {
		return fn(&Tx{btx: btx, epoch: readEpoch(btx), readOnly: true})
	})
}

func readEpoch(tx *bolt.Tx) uint64 {
	v := tx.Bucket(bucketMeta).Get(keyEpoch)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func resourceKey(k api.Key) []byte {
	return []byte(k.Kind + "\x00" + k.Project + "\x00" + k.Name)
}

// storedChange is a delta entry as kept on disk: the previous version rides
// along so a plan filter can turn a move between hosts into a delete for the
// host that lost the resource.
type storedChange struct {
	Op   api.Op        `json:"op"`
	New  api.Resource  `json:"new"`
	Prev *api.Resource `json:"prev,omitempty"`
}

type storedDelta struct {
	Epoch   uint64         `json:"epoch"`
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

// Size is the store file's size in bytes, as bbolt sees it.
func (s *Store) Size() int64 {
	var n int64
	_ = s.db.View(func(tx *bolt.Tx) error {
		n = tx.Size()
		return nil
	})
	return n
}
