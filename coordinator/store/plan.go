package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/strata-infra/strata/pkg/api"
)

// Filter says whether a resource belongs in a given host's plan.
type Filter func(api.Resource) bool

// Plan builds host's plan after epoch since: the filtered deltas in
// (since, current] when every one of them is still retained, else the full
// filtered plan at the current epoch. It is read in one transaction, so the
// answer is consistent with its epoch.
func (s *Store) Plan(host string, since uint64, keep Filter) (api.Plan, error) {
	var p api.Plan
	err := s.View(func(tx *Tx) error {
		p = api.Plan{Host: host, Epoch: tx.epoch, History: s.history}
		if since == tx.epoch {
			return nil
		}
		if since > 0 && since < tx.epoch {
			deltas, ok, err := tx.deltasAfter(since, keep)
			if err != nil {
				return err
			}
			if ok {
				p.Deltas = deltas
				return nil
			}
		}
		// Full plan: since is 0, too old, or ahead of us (a coordinator
		// restored from an older copy); the agent fences on the epoch.
		p.Full = true
		p.Resources = []api.Resource{}
		return tx.All(func(r api.Resource) error {
			if keep(r) {
				p.Resources = append(p.Resources, r)
			}
			return nil
		})
	})
	return p, err
}

// deltasAfter returns the deltas after since, filtered; ok is false when the
// log no longer reaches back to since+1.
func (tx *Tx) deltasAfter(since uint64, keep Filter) ([]api.Delta, bool, error) {
	c := tx.btx.Bucket(bucketDeltas).Cursor()
	k, v := c.Seek(u64(since + 1))
	if k == nil || binary.BigEndian.Uint64(k) != since+1 {
		return nil, false, nil
	}
	out := []api.Delta{}
	for next := since + 1; k != nil; k, v = c.Next() {
		if binary.BigEndian.Uint64(k) != next {
			return nil, false, nil // a gap (an epoch jump after a restore): full plan
		}
		next++
		var sd storedDelta
		if err := json.Unmarshal(v, &sd); err != nil {
			return nil, false, fmt.Errorf("decode delta %d: %w", binary.BigEndian.Uint64(k), err)
		}
		d := api.Delta{Epoch: sd.Epoch, Changes: []api.Change{}}
		for _, ch := range sd.Changes {
			if c, ok := filterChange(ch, keep); ok {
				d.Changes = append(d.Changes, c)
			}
		}
		// An empty delta still tells the host the epoch moved.
		out = append(out, d)
	}
	return out, true, nil
}

// filterChange maps a stored change onto one host: a resource that left the
// host's plan becomes a delete for it.
func filterChange(ch storedChange, keep Filter) (api.Change, bool) {
	wasHere := ch.Prev != nil && keep(*ch.Prev)
	switch ch.Op {
	case api.OpPut:
		if keep(ch.New) {
			return api.Change{Op: api.OpPut, Resource: ch.New}, true
		}
		if wasHere {
			return api.Change{Op: api.OpDelete, Resource: api.Resource{Kind: ch.New.Kind, Project: ch.New.Project, Name: ch.New.Name, Epoch: ch.New.Epoch}}, true
		}
	case api.OpDelete:
		if wasHere {
			return api.Change{Op: api.OpDelete, Resource: ch.New}, true
		}
	}
	return api.Change{}, false
}

// OldestDelta is the epoch of the oldest retained delta (0 when none).
func (s *Store) OldestDelta() uint64 {
	var e uint64
	_ = s.View(func(tx *Tx) error {
		if k, _ := tx.btx.Bucket(bucketDeltas).Cursor().First(); k != nil {
			e = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return e
}
