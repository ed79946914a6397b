package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/strata-infra/strata/pkg/api"
)

// Tx is one store transaction. Reads see the writes made earlier in it.
type Tx struct {
	btx      *bolt.Tx
	epoch    uint64 // the epoch this transaction will commit as
	now      time.Time
	readOnly bool
	changes  []storedChange
	// rollback runs when the transaction does not commit (OnRollback).
	rollback []func()
	// placements are the placement statuses to write after it ends.
	placements []placementNote
}

// OnRollback registers fn to run if this transaction does not commit a
// change,
// to undo what was reserved outside the store for it (a scheduler claim).
func (tx *Tx) OnRollback(fn func()) { tx.rollback = append(tx.rollback, fn) }

// Epoch is the epoch a read-write transaction will create, or the current
// epoch in a read-only one.
func (tx *Tx) Epoch() uint64 { return tx.epoch }

// Get reads one resource.
func (tx *Tx) Get(k api.Key) (api.Resource, error) {
	v := tx.btx.Bucket(bucketResources).Get(resourceKey(k))
	if v == nil {
		return api.Resource{}, fmt.Errorf("%s: %w", k, ErrNotFound)
	}
	var r api.Resource
	if err := json.Unmarshal(v, &r); err != nil {
		return api.Resource{}, fmt.Errorf("decode %s: %w", k, err)
	}
	return r, nil
}

// List returns the resources of a kind, in name order; project "" lists
// every project's when all is true, else only global ones.
func (tx *Tx) List(kind, project string, all bool) ([]api.Resource, error) {
	prefix := []byte(kind + "\x00")
	if !all {
		prefix = append(prefix, []byte(project+"\x00")...)
	}
	var out []api.Resource
	c := tx.btx.Bucket(bucketResources).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var r api.Resource
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("decode %q: %w", k, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Keys returns the keys of every project's resources of a kind, without
// decoding them: for cluster-wide uniqueness checks that need only names.
func (tx *Tx) Keys(kind string) []api.Key {
	prefix := []byte(kind + "\x00")
	var out []api.Key
	c := tx.btx.Bucket(bucketResources).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		parts := bytes.SplitN(k, []byte{0}, 3)
		if len(parts) == 3 {
			out = append(out, api.Key{Kind: kind, Project: string(parts[1]), Name: string(parts[2])})
		}
	}
	return out
}

// Count returns how many resources of a kind a project holds, without
// decoding them.
func (tx *Tx) Count(kind, project string) int {
	prefix := []byte(kind + "\x00" + project + "\x00")
	n := 0
	c := tx.btx.Bucket(bucketResources).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n
}

// All calls fn for every resource.
func (tx *Tx) All(fn func(api.Resource) error) error {
	return tx.btx.Bucket(bucketResources).ForEach(func(k, v []byte) error {
		var r api.Resource
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode %q: %w", k, err)
		}
		return fn(r)
	})
}

// Put creates or replaces a resource. Writing the spec it already has is a
// no-op and reports false.
func (tx *Tx) Put(r api.Resource) (api.Resource, bool, error) {
	if tx.readOnly {
		return r, false, fmt.Errorf("put %s: read-only transaction", r.Key())
	}
	prev, err := tx.Get(r.Key())
	var prevp *api.Resource
	if err == nil {
		if jsonEqual(prev.Spec, r.Spec) {
			return prev, false, nil
		}
		r.Created = prev.Created
		prevp = &prev
	} else {
		r.Created = tx.now
	}
	r.Updated, r.Epoch, r.Status = tx.now, tx.epoch, nil
	buf, err := json.Marshal(r)
	if err != nil {
		return r, false, fmt.Errorf("encode %s: %w", r.Key(), err)
	}
	if err := tx.btx.Bucket(bucketResources).Put(resourceKey(r.Key()), buf); err != nil {
		return r, false, fmt.Errorf("put %s: %w", r.Key(), err)
	}
	tx.changes = append(tx.changes, storedChange{Op: api.OpPut, New: r, Prev: prevp})
	return r, true, nil
}

// Delete removes a resource; a missing one reports false and no error.
func (tx *Tx) Delete(k api.Key) (bool, error) {
	if tx.readOnly {
		return false, fmt.Errorf("delete %s: read-only transaction", k)
	}
	prev, err := tx.Get(k)
	if err != nil {
		return false, nil
	}
	if err := tx.btx.Bucket(bucketResources).Delete(resourceKey(k)); err != nil {
		return false, fmt.Errorf("delete %s: %w", k, err)
	}
	tx.deleteStatuses(k)
	tx.changes = append(tx.changes, storedChange{Op: api.OpDelete, New: api.Resource{Kind: k.Kind, Project: k.Project, Name: k.Name, Epoch: tx.epoch}, Prev: &prev})
	return true, nil
}

func (tx *Tx) commitDelta(retain int) error {
	buf, err := json.Marshal(storedDelta{Epoch: tx.epoch, Changes: tx.changes})
	if err != nil {
		return fmt.Errorf("encode delta %d: %w", tx.epoch, err)
	}
	deltas := tx.btx.Bucket(bucketDeltas)
	if err := deltas.Put(u64(tx.epoch), buf); err != nil {
		return fmt.Errorf("append delta %d: %w", tx.epoch, err)
	}
	if err := tx.btx.Bucket(bucketMeta).Put(keyEpoch, u64(tx.epoch)); err != nil {
		return fmt.Errorf("write epoch %d: %w", tx.epoch, err)
	}
	// Trim the log to the newest retain deltas.
	if tx.epoch > uint64(retain) {
		cut := u64(tx.epoch - uint64(retain))
		c := deltas.Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k, cut) <= 0; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return fmt.Errorf("trim delta log: %w", err)
			}
		}
	}
	return nil
}
