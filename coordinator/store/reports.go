package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// PutReport records an agent's status report and the per-resource statuses
// in it. Reports are observed state: they never bump the epoch and keep no
// history. A status on a resource that keep says is not the host's is
// dropped, and its key returned: a host never writes onto another host's
// (tenant's) resources, and one stale entry does not lose the rest of the
// report.
func (s *Store) PutReport(r api.HostReport, keep Filter) (dropped []api.Key, err error) {
	buf, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	ops := []ObsOp{{NS: nsReports, Key: r.Host, Val: buf}}
	err = s.View(func(tx *Tx) error {
		for _, rr := range r.Resources {
			stored, err := tx.Get(rr.Key)
			if err != nil {
				continue // deleted since the agent looked
			}
			if !keep(stored) {
				dropped = append(dropped, rr.Key)
				continue
			}
			rr.ResourceStatus.Host = r.Host
			b, err := json.Marshal(rr.ResourceStatus)
			if err != nil {
				return err
			}
			ops = append(ops, ObsOp{NS: nsStatus, Key: statusKey(rr.Key, r.Host), Val: b})
		}
		return nil
	})
	if err != nil {
		return dropped, err
	}
	if err := s.backend.Write(ops); err != nil {
		return dropped, err
	}
	for _, rr := range r.Resources {
		if rr.Kind == "fence" {
			s.mu.Lock()
			close(s.fenceReported)
			s.fenceReported = make(chan struct{})
			s.mu.Unlock()
			break
		}
	}
	return dropped, nil
}

// FenceReported returns a channel closed when a report carrying a
// fence's status is next stored through this store: the recovery
// controller moves a fenced host's instances as soon as the fence is in
// force, not on its next tick. (Reports stored by another coordinator
// are not seen here; the tick covers them.)
func (s *Store) FenceReported() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fenceReported
}

// Reports returns the last report of every host that has sent one.
func (s *Store) Reports() (map[string]api.HostReport, error) {
	out := map[string]api.HostReport{}
	err := s.backend.Scan(nsReports, "", func(k string, v []byte) error {
		var r api.HostReport
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		out[k] = r
		return nil
	})
	return out, err
}

// Report is host's last report, read inside the transaction.
func (tx *Tx) Report(host string) (api.HostReport, bool) {
	var r api.HostReport
	v, err := tx.s.backend.Get(nsReports, host)
	if err != nil || v == nil || json.Unmarshal(v, &r) != nil {
		return r, false
	}
	return r, true
}

// Reports returns every host's last report, read inside the transaction,
// in host order.
func (tx *Tx) Reports() []api.HostReport {
	var out []api.HostReport
	_ = tx.s.backend.Scan(nsReports, "", func(_ string, v []byte) error {
		var r api.HostReport
		if json.Unmarshal(v, &r) == nil {
			out = append(out, r)
		}
		return nil
	})
	return out
}

// statusKey keys one host's status of a resource: the resource's key, NUL,
// the host.
func statusKey(k api.Key, host string) string {
	return string(resourceKey(k)) + "\x00" + host
}

// HostStatuses returns what each host last reported about a resource, in
// host order.
func (tx *Tx) HostStatuses(k api.Key) []api.ResourceStatus {
	prefix := string(resourceKey(k)) + "\x00"
	var out []api.ResourceStatus
	_ = tx.s.backend.Scan(nsStatus, prefix, func(key string, v []byte) error {
		if len(key) == len(prefix) {
			return nil // the placement status (placementKey), no host's
		}
		var st api.ResourceStatus
		if json.Unmarshal(v, &st) == nil {
			out = append(out, st)
		}
		return nil
	})
	return out
}

// Status returns the status that matters most of a resource: a host's
// error if any host has one, else the latest report; nil when no host
// reported on it.
func (tx *Tx) Status(k api.Key) *api.ResourceStatus {
	var best *api.ResourceStatus
	for _, st := range tx.HostStatuses(k) {
		switch {
		case best == nil,
			st.State == api.ResourceError && best.State != api.ResourceError,
			(st.State == api.ResourceError) == (best.State == api.ResourceError) && st.Updated.After(best.Updated):
			best = &st
		}
	}
	return best
}

// Failing returns every resource a host reports in error; host "" means
// all hosts.
func (tx *Tx) Failing(host string) []api.ResourceReport {
	var out []api.ResourceReport
	_ = tx.s.backend.Scan(nsStatus, "", func(key string, v []byte) error {
		parts := strings.SplitN(key, "\x00", 4)
		if len(parts) != 4 || len(parts[3]) == 0 || (host != "" && parts[3] != host) {
			return nil
		}
		var st api.ResourceStatus
		if json.Unmarshal(v, &st) != nil || st.State != api.ResourceError {
			return nil
		}
		out = append(out, api.ResourceReport{Key: api.Key{Kind: parts[0], Project: parts[1], Name: parts[2]}, ResourceStatus: st})
		return nil
	})
	return out
}

// placementKey keys a resource's placement status beside its hosts'
// statuses: the status key of the empty host (no host has that name), so
// deleting the resource drops it too.
func placementKey(k api.Key) string { return statusKey(k, "") }

// Placement returns the scheduler's last word on a resource, or nil.
func (tx *Tx) Placement(k api.Key) *api.PlacementStatus {
	v, err := tx.s.backend.Get(nsStatus, placementKey(k))
	if err != nil || v == nil {
		return nil
	}
	var p api.PlacementStatus
	if json.Unmarshal(v, &p) != nil {
		return nil
	}
	return &p
}

// SetPlacement records the scheduler's outcome for a resource. It is
// observed state: it is written after this transaction ends, whether the
// transaction commits or not (a refused resize changes no spec but its
// reason is kept), and only while the resource exists.
func (tx *Tx) SetPlacement(k api.Key, p api.PlacementStatus) {
	if p.Updated.IsZero() {
		p.Updated = time.Now().UTC()
	}
	tx.placements = append(tx.placements, placementNote{key: k, status: p})
}

type placementNote struct {
	key    api.Key
	status api.PlacementStatus
}

// writePlacements stores the placement statuses a transaction noted.
func (s *Store) writePlacements(notes []placementNote) error {
	if len(notes) == 0 {
		return nil
	}
	var ops []ObsOp
	err := s.View(func(tx *Tx) error {
		for _, n := range notes {
			if _, err := tx.Get(n.key); err != nil {
				continue
			}
			b, err := json.Marshal(n.status)
			if err != nil {
				return err
			}
			ops = append(ops, ObsOp{NS: nsStatus, Key: placementKey(n.key), Val: b})
		}
		return nil
	})
	if err != nil || len(ops) == 0 {
		return err
	}
	if err := s.backend.Write(ops); err != nil {
		return fmt.Errorf("placement statuses: %w", err)
	}
	return nil
}
