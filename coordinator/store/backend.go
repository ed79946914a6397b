package store

import (
	"errors"
)

// Backend is where a Store keeps its state. The Store holds the desired
// state, the epoch and the retained deltas in memory and runs every
// transaction there; a backend only loads them once and then writes each
// commit atomically, so bbolt (one coordinator) and etcd (any number of
// coordinators) behave the same. Observed state (host reports, resource
// statuses, placement notes, tokens) has no epoch and no history and is
// kept apart, in the backend's plain key-value namespaces.
type Backend interface {
	// Load reads the whole desired state, its epoch, history and retained
	// deltas, creating an empty store (with a fresh history) when there
	// is none.
	Load() (*Loaded, error)
	// Commit writes one commit atomically, only if the stored epoch is
	// still rec.Base; otherwise it returns ErrEpochMoved and writes
	// nothing.
	Commit(rec *Record) error
	// Get returns the value under key in namespace ns, or nil.
	Get(ns, key string) ([]byte, error)
	// Scan calls fn for every key under prefix in ns, in key order.
	Scan(ns, prefix string, fn func(key string, val []byte) error) error
	// Write applies ops at once.
	Write(ops []ObsOp) error
	Close() error
}

// ErrEpochMoved is a commit refused because another coordinator committed
// first; the Store catches up and runs the transaction again.
var ErrEpochMoved = errors.New("the cluster epoch moved under this commit")

// ErrLeaseLost is a commit refused because it was made under a lease
// (Tx.Under) that its holder holds no more: a successor may act already,
// so the commit is not tried again.
var ErrLeaseLost = errors.New("the lease this commit was made under is held no more")

// LeaseGuard names a singleton lease by the store key its holder made and
// the revision it made it at (lease.Hold's Key and Token). A commit under
// a guard goes in only while that key still exists at that revision, in
// the same etcd transaction as the epoch check: a holder that was cut off
// cannot write after its lease expired, even if it has not noticed yet.
// The zero guard (a single coordinator's local lease) guards nothing.
type LeaseGuard struct {
	Key string
	Rev int64
}

// Loaded is a backend's whole state.
type Loaded struct {
	Epoch     uint64
	History   string
	Resources []KV // by key
	Deltas    []storedDelta
	// Rev is the backend's revision of this view (etcd), to follow from.
	Rev int64
}

// KV is one record.
type KV struct {
	Key string
	Val []byte
}

// Record is one commit as a backend writes it.
type Record struct {
	Base, Epoch uint64
	Puts        []KV     // resources written
	Deletes     []string // resources removed
	Delta       []byte   // the encoded delta at Epoch
	// TrimTo drops the retained deltas at or below this epoch (0: none).
	TrimTo uint64
	// Obs are observed-state writes that go with the commit (statuses
	// of a deleted resource).
	Obs []ObsOp
	// Guard, when set, is a lease the commit holds only under. bbolt
	// has one coordinator and local leases, so only etcd checks it.
	Guard LeaseGuard
}

// Namespaces of observed state.
const (
	nsTokens  = "tokens"
	nsReports = "host_reports"
	nsStatus  = "resource_status"
)

// ObsOp is one observed-state write: a put (Val set), a delete, or a
// delete of every key under Key (Prefix).
type ObsOp struct {
	NS     string
	Key    string
	Val    []byte
	Delete bool
	Prefix bool
}
