package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/btree"

	"github.com/strata-infra/strata/pkg/api"
)

// Tx is one store transaction. Reads see the writes made earlier in it.
type Tx struct {
	s        *Store
	tree     *btree.BTreeG[item] // this transaction's copy-on-write view
	epoch    uint64              // the epoch this transaction will commit as
	now      time.Time
	readOnly bool
	changes  []storedChange
	// rollback runs when the transaction does not commit (OnRollback).
	rollback []func()
	// placements are the placement statuses to write after it ends.
	placements []placementNote
	guard      LeaseGuard
}

// Under makes the transaction's commit conditional on the lease g: if its
// holder lost it, the commit fails with ErrLeaseLost and writes nothing.
func (tx *Tx) Under(g LeaseGuard) { tx.guard = g }

// OnRollback registers fn to run if this transaction does not commit a
// change,
// to undo what was reserved outside the store for it (a scheduler claim).
func (tx *Tx) OnRollback(fn func()) { tx.rollback = append(tx.rollback, fn) }

// Epoch is the epoch a read-write transaction will create, or the current
// epoch in a read-only one.
func (tx *Tx) Epoch() uint64 { return tx.epoch }

// Get reads one resource.
func (tx *Tx) Get(k api.Key) (api.Resource, error) {
	it, ok := tx.tree.Get(item{key: string(resourceKey(k))})
	if !ok {
		return api.Resource{}, fmt.Errorf("%s: %w", k, ErrNotFound)
	}
	var r api.Resource
	if err := json.Unmarshal(it.val, &r); err != nil {
		return api.Resource{}, fmt.Errorf("decode %s: %w", k, err)
	}
	return r, nil
}

// List returns the resources of a kind, in name order; project "" lists
// every project's when all is true, else only global ones.
func (tx *Tx) List(kind, project string, all bool) ([]api.Resource, error) {
	prefix := kind + "\x00"
	if !all {
		prefix += project + "\x00"
	}
	var out []api.Resource
	var err error
	tx.scan(prefix, func(it item) bool {
		var r api.Resource
		if err = json.Unmarshal(it.val, &r); err != nil {
			err = fmt.Errorf("decode %q: %w", it.key, err)
			return false
		}
		out = append(out, r)
		return true
	})
	return out, err
}

// Keys returns the keys of every project's resources of a kind, without
// decoding them: for cluster-wide uniqueness checks that need only names.
func (tx *Tx) Keys(kind string) []api.Key {
	var out []api.Key
	tx.scan(kind+"\x00", func(it item) bool {
		if parts := strings.SplitN(it.key, "\x00", 3); len(parts) == 3 {
			out = append(out, api.Key{Kind: kind, Project: parts[1], Name: parts[2]})
		}
		return true
	})
	return out
}

// Count returns how many resources of a kind a project holds, without
// decoding them.
func (tx *Tx) Count(kind, project string) int {
	n := 0
	tx.scan(kind+"\x00"+project+"\x00", func(item) bool { n++; return true })
	return n
}

// All calls fn for every resource.
func (tx *Tx) All(fn func(api.Resource) error) error {
	var err error
	tx.tree.Ascend(func(it item) bool {
		var r api.Resource
		if err = json.Unmarshal(it.val, &r); err != nil {
			err = fmt.Errorf("decode %q: %w", it.key, err)
			return false
		}
		err = fn(r)
		return err == nil
	})
	return err
}

// scan calls fn for every resource whose key starts with prefix, in key
// order, until fn returns false.
func (tx *Tx) scan(prefix string, fn func(item) bool) {
	tx.tree.AscendGreaterOrEqual(item{key: prefix}, func(it item) bool {
		return strings.HasPrefix(it.key, prefix) && fn(it)
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
	tx.tree.ReplaceOrInsert(item{key: string(resourceKey(r.Key())), val: buf})
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
	tx.tree.Delete(item{key: string(resourceKey(k))})
	tx.changes = append(tx.changes, storedChange{Op: api.OpDelete, New: api.Resource{Kind: k.Kind, Project: k.Project, Name: k.Name, Epoch: tx.epoch}, Prev: &prev})
	return true, nil
}
