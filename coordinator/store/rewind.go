package store

import (
	"encoding/json"
	"fmt"

	"github.com/strata-infra/strata/pkg/api"
)

// ObservedDelta is one retained commit as observers see it: a delete
// carries the resource as it was.
type ObservedDelta struct {
	Epoch   uint64
	Changes []api.Change
}

// Rewind returns the state at base, the oldest epoch the retained deltas
// reach back to without a gap or a jump, and the commits of (base, upTo]
// as observers saw them. The state is the current one with the retained
// deltas undone, newest first, from the previous versions they keep. A
// view that starts at an epoch (a coordinator that restarted) rebuilds
// with it what it would have seen of the commits before its start.
// base >= upTo when nothing before upTo can be rebuilt.
func (s *Store) Rewind(upTo uint64) (base uint64, state []api.Resource, deltas []ObservedDelta, err error) {
	s.mu.Lock()
	t, epoch := s.tree.Clone(), s.epoch
	kept := append([]storedDelta(nil), s.deltas...)
	s.mu.Unlock()
	if upTo > epoch {
		return epoch, nil, nil, fmt.Errorf("rewind to %d: the store is at epoch %d", upTo, epoch)
	}
	cur := map[api.Key]api.Resource{}
	t.Ascend(func(it item) bool {
		var r api.Resource
		if err = json.Unmarshal(it.val, &r); err != nil {
			err = fmt.Errorf("decode %q: %w", it.key, err)
			return false
		}
		cur[r.Key()] = r
		return true
	})
	if err != nil {
		return 0, nil, nil, err
	}
	base = epoch
	var back []storedDelta // newest first
	for i := len(kept) - 1; i >= 0; i-- {
		d := kept[i]
		if d.Epoch != base || d.Base != d.Epoch-1 {
			break // a gap, or an epoch jump (a restore): nothing before it
		}
		for j := len(d.Changes) - 1; j >= 0; j-- {
			ch := d.Changes[j]
			if ch.Prev != nil {
				cur[ch.Prev.Key()] = *ch.Prev
			} else {
				delete(cur, ch.New.Key())
			}
		}
		back = append(back, d)
		base = d.Base
	}
	if base >= upTo {
		return base, nil, nil, nil
	}
	for _, r := range cur {
		state = append(state, r)
	}
	for i := len(back) - 1; i >= 0; i-- {
		d := back[i]
		if d.Epoch > upTo {
			break
		}
		od := ObservedDelta{Epoch: d.Epoch}
		for _, ch := range d.Changes {
			c := api.Change{Op: ch.Op, Resource: ch.New}
			if ch.Op == api.OpDelete && ch.Prev != nil {
				c.Resource = *ch.Prev
			}
			od.Changes = append(od.Changes, c)
		}
		deltas = append(deltas, od)
	}
	return base, state, deltas, nil
}
