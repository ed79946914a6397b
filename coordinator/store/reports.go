package store

import (
	"encoding/json"
	"fmt"

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
			if err := st.Put(k, b); err != nil {
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

// Status returns the observed status of a resource, if any host reported one.
func (tx *Tx) Status(k api.Key) *api.ResourceStatus {
	v := tx.btx.Bucket(bucketStatus).Get(resourceKey(k))
	if v == nil {
		return nil
	}
	var st api.ResourceStatus
	if json.Unmarshal(v, &st) != nil {
		return nil
	}
	return &st
}
