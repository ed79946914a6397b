package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/strata-infra/strata/pkg/api"
)

// PutReport records an agent's status report and the per-resource statuses
// in it. Reports are observed state: they never bump the epoch. A status
// on a resource that keep says is not the host's is dropped, and its key
// returned: a host never writes onto another host's (tenant's) resources,
// and one stale entry does not lose the rest of the report.
func (s *Store) PutReport(r api.HostReport, keep Filter) (dropped []api.Key, err error) {
	buf, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return dropped, s.db.Update(func(tx *bolt.Tx) error {
		dropped = dropped[:0]
		if err := tx.Bucket(bucketReports).Put([]byte(r.Host), buf); err != nil {
			return err
		}
		st := tx.Bucket(bucketStatus)
		res := tx.Bucket(bucketResources)
		for _, rr := range r.Resources {
			k := resourceKey(rr.Key)
			v := res.Get(k)
			if v == nil {
				continue // deleted since the agent looked
			}
			var stored api.Resource
			if err := json.Unmarshal(v, &stored); err != nil {
				return fmt.Errorf("status of %s: %w", rr.Key, err)
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
			if err := st.Put(statusKey(rr.Key, r.Host), b); err != nil {
				return fmt.Errorf("status of %s: %w", rr.Key, err)
			}
		}
		return nil
	})
}

// Reports returns the last report of every host that has sent one.
func (s *Store) Reports() (map[string]api.HostReport, error) {
	out := map[string]api.HostReport{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketReports).ForEach(func(k, v []byte) error {
			var r api.HostReport
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out[string(k)] = r
			return nil
		})
	})
	return out, err
}

// statusKey keys one host's status of a resource: the resource's key, NUL,
// the host.
func statusKey(k api.Key, host string) []byte {
	return append(append(resourceKey(k), 0), host...)
}

// HostStatuses returns what each host last reported about a resource, in
// host order.
func (tx *Tx) HostStatuses(k api.Key) []api.ResourceStatus {
	prefix := append(resourceKey(k), 0)
	var out []api.ResourceStatus
	c := tx.btx.Bucket(bucketStatus).Cursor()
	for key, v := c.Seek(prefix); key != nil && bytes.HasPrefix(key, prefix); key, v = c.Next() {
		if len(key) == len(prefix) {
			continue // the placement status (placementKey), no host's
		}
		var st api.ResourceStatus
		if json.Unmarshal(v, &st) == nil {
			out = append(out, st)
		}
	}
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
	_ = tx.btx.Bucket(bucketStatus).ForEach(func(key, v []byte) error {
		parts := bytes.SplitN(key, []byte{0}, 4)
		if len(parts) != 4 || len(parts[3]) == 0 || (host != "" && string(parts[3]) != host) {
			return nil
		}
		var st api.ResourceStatus
		if json.Unmarshal(v, &st) != nil || st.State != api.ResourceError {
			return nil
		}
		out = append(out, api.ResourceReport{Key: api.Key{Kind: string(parts[0]), Project: string(parts[1]), Name: string(parts[2])}, ResourceStatus: st})
		return nil
	})
	return out
}

// deleteStatuses drops every host's status of a resource that is gone.
func (tx *Tx) deleteStatuses(k api.Key) {
	prefix := append(resourceKey(k), 0)
	b := tx.btx.Bucket(bucketStatus)
	c := b.Cursor()
	var keys [][]byte
	for key, _ := c.Seek(prefix); key != nil && bytes.HasPrefix(key, prefix); key, _ = c.Next() {
		keys = append(keys, append([]byte(nil), key...))
	}
	for _, key := range keys {
		_ = b.Delete(key)
	}
}

// placementKey keys a resource's placement status beside its hosts'
// statuses: the status key of the empty host (no host has that name), so
// deleting the resource drops it too.
func placementKey(k api.Key) []byte { return statusKey(k, "") }

// Placement returns the scheduler's last word on a resource, or nil.
func (tx *Tx) Placement(k api.Key) *api.PlacementStatus {
	v := tx.btx.Bucket(bucketStatus).Get(placementKey(k))
	if v == nil {
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
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, n := range notes {
			if tx.Bucket(bucketResources).Get(resourceKey(n.key)) == nil {
				continue
			}
			b, err := json.Marshal(n.status)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketStatus).Put(placementKey(n.key), b); err != nil {
				return fmt.Errorf("placement status of %s: %w", n.key, err)
			}
		}
		return nil
	})
}
