// Package plan is the agent's copy of its host plan: the resources the
// coordinator wants on this host at one cluster epoch, kept on disk so a
// restarted agent resumes by deltas instead of a full download.
package plan

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// ErrStale is returned for a plan older than the one already held: after a
// coordinator failover to a stale copy, the agent refuses to go back.
var ErrStale = errors.New("stale plan")

// State is the plan at Epoch. It is not safe for concurrent use; the
// watcher owns it and hands out Snapshots.
type State struct {
	Epoch uint64 `json:"epoch"`
	// History is the coordinator store's line of epochs this plan is from
	// (api.Plan.History); "" before the first plan.
	History string `json:"history,omitempty"`
	// Storage says the plan is the storage plan (api.Plan.Storage): it
	// holds every volume and snapshot of the cluster.
	Storage   bool                    `json:"storage,omitempty"`
	Resources map[string]api.Resource `json:"resources"`
}

// NewState returns an empty plan at epoch 0.
func NewState() *State { return &State{Resources: map[string]api.Resource{}} }

// Apply folds a coordinator answer into the state. A full plan replaces
// everything; deltas must follow on from Epoch without a gap.
//
// A full plan from another history (the coordinator's store was restored
// from a backup) replaces everything whatever its epoch: the operator
// chose that state. Within one history epochs never go back.
func (s *State) Apply(p api.Plan) error {
	if p.Full && p.History != "" && s.History != "" && p.History != s.History {
		s.replace(p)
		return nil
	}
	if p.Epoch < s.Epoch {
		return fmt.Errorf("%w: coordinator is at epoch %d, this host already applied %d", ErrStale, p.Epoch, s.Epoch)
	}
	if p.History != "" && s.History != "" && p.History != s.History {
		return fmt.Errorf("deltas of history %s do not follow on from history %s", p.History, s.History)
	}
	if p.Full {
		s.replace(p)
		return nil
	}
	if p.Storage != s.Storage && len(p.Deltas) > 0 {
		// Storage deltas onto a plan without every volume (or the other
		// way round) would make a plan that is neither.
		return fmt.Errorf("deltas of a storage plan %v do not follow on from a storage plan %v", p.Storage, s.Storage)
	}
	// Check the chain before touching anything, so a bad answer changes nothing.
	e := s.Epoch
	for _, d := range p.Deltas {
		if d.Epoch != e+1 {
			return fmt.Errorf("delta chain broken: have epoch %d, got delta %d", e, d.Epoch)
		}
		e = d.Epoch
	}
	for _, d := range p.Deltas {
		for _, c := range d.Changes {
			k := c.Resource.Key().String()
			switch c.Op {
			case api.OpPut:
				s.Resources[k] = c.Resource
			case api.OpDelete:
				delete(s.Resources, k)
			}
		}
	}
	s.Epoch = e
	if p.History != "" {
		s.History = p.History
	}
	return nil
}

func (s *State) replace(p api.Plan) {
	next := make(map[string]api.Resource, len(p.Resources))
	for _, r := range p.Resources {
		next[r.Key().String()] = r
	}
	s.Resources, s.Epoch, s.Storage = next, p.Epoch, p.Storage
	if p.History != "" {
		s.History = p.History
	}
}

// Snapshot returns an immutable view for reconcilers.
func (s *State) Snapshot() *Snapshot {
	rs := make([]api.Resource, 0, len(s.Resources))
	for _, r := range s.Resources {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Key().String() < rs[j].Key().String() })
	return &Snapshot{Epoch: s.Epoch, Storage: s.Storage, Resources: rs}
}

// ErrCorrupt marks a saved plan that cannot be decoded.
var ErrCorrupt = errors.New("corrupt plan file")

// LoadOrSetAside is Load for an agent starting up: a plan file that cannot
// be decoded is not fatal; it is renamed aside (kept for a post-mortem)
// with a log line, and the agent starts from an empty plan, which makes its
// first watch a full plan from the coordinator.
func LoadOrSetAside(path string, log *slog.Logger) (*State, error) {
	s, err := Load(path)
	if !errors.Is(err, ErrCorrupt) {
		return s, err
	}
	aside, serr := SetAside(path)
	if serr != nil {
		return nil, fmt.Errorf("%w; and setting it aside failed: %w", err, serr)
	}
	log.Error("saved plan is unreadable; set it aside and starting from a full plan", "err", err, "moved_to", aside)
	return NewState(), nil
}

// SetAside renames an untrustworthy state file to <path>.corrupt-<time>
// and returns the new name.
func SetAside(path string) (string, error) {
	aside := fmt.Sprintf("%s.corrupt-%s", path, time.Now().UTC().Format("20060102T150405.000000000Z"))
	if err := os.Rename(path, aside); err != nil {
		return "", fmt.Errorf("set aside %q: %w", path, err)
	}
	return aside, nil
}

// Load reads the state saved at path; a missing file is an empty plan.
// A file that does not decode is an ErrCorrupt error.
func Load(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return NewState(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read plan %q: %w", path, err)
	}
	s := NewState()
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrCorrupt, path, err)
	}
	if s.Resources == nil {
		s.Resources = map[string]api.Resource{}
	}
	return s, nil
}

// Save writes the state atomically (temp file, fsync, rename), so a crash
// leaves either the old or the new plan, never half of one.
func (s *State) Save(path string) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".plan-*")
	if err != nil {
		return fmt.Errorf("save plan: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("save plan: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save plan: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save plan: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save plan: %w", err)
	}
	return nil
}

// Snapshot is a read-only plan at one epoch, sorted by key.
type Snapshot struct {
	Epoch uint64
	// Storage: the storage plan, holding every volume and snapshot.
	Storage   bool
	Resources []api.Resource
}

// Kind returns the resources of one kind.
func (s *Snapshot) Kind(kind string) []api.Resource {
	var out []api.Resource
	for _, r := range s.Resources {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}
