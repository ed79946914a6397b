package store

import (
	"sort"

	"github.com/strata-infra/strata/pkg/api"
)

// Filter says whether a resource belongs in a given host's plan.
type Filter func(api.Resource) bool

// Plan builds host's plan after epoch since: the filtered deltas in
// (since, current] when every one of them is still retained, else the full
// filtered plan at the current epoch. It reads one snapshot, so the answer
// is consistent with its epoch; deltas are served from memory, decoded
// once when they were committed.
func (s *Store) Plan(host string, since uint64, keep Filter) (api.Plan, error) {
	s.mu.Lock()
	t, epoch, history, deltas := s.tree.Clone(), s.epoch, s.history, s.deltas
	s.mu.Unlock()
	p := api.Plan{Host: host, Epoch: epoch, History: history}
	if since == epoch {
		return p, nil
	}
	if since > 0 && since < epoch {
		if ds, ok := deltasAfter(deltas, since, epoch, keep); ok {
			p.Deltas = ds
			return p, nil
		}
	}
	// Full plan: since is 0, too old, or ahead of us (a coordinator
	// restored from an older copy); the agent fences on the epoch.
	p.Full = true
	p.Resources = []api.Resource{}
	tx := &Tx{s: s, tree: t, epoch: epoch, readOnly: true}
	err := tx.All(func(r api.Resource) error {
		if keep(r) {
			p.Resources = append(p.Resources, r)
		}
		return nil
	})
	return p, err
}

// deltasAfter returns the retained deltas in (since, epoch], filtered; ok
// is false when they no longer reach back to since+1 or have a gap (an
// epoch jump after a restore).
func deltasAfter(deltas []storedDelta, since, epoch uint64, keep Filter) ([]api.Delta, bool) {
	i := sort.Search(len(deltas), func(i int) bool { return deltas[i].Epoch > since })
	if i == len(deltas) || deltas[i].Epoch != since+1 {
		return nil, false
	}
	out := []api.Delta{}
	next := since + 1
	for _, sd := range deltas[i:] {
		if sd.Epoch > epoch {
			break
		}
		if sd.Epoch != next {
			return nil, false
		}
		next++
		d := api.Delta{Epoch: sd.Epoch, Changes: []api.Change{}}
		for _, ch := range sd.Changes {
			if c, ok := filterChange(ch, keep); ok {
				d.Changes = append(d.Changes, c)
			}
		}
		// An empty delta still tells the host the epoch moved.
		out = append(out, d)
	}
	return out, next == epoch+1
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.deltas) == 0 {
		return 0
	}
	return s.deltas[0].Epoch
}
