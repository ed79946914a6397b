package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
)

// Outcomes of EndMigration.
const (
	MigrationGoesOn = ""       // the report changes nothing
	MigrationDone   = "done"   // the destination has the instance
	MigrationFailed = "failed" // a live migration failed: back on the source
)

// EndMigration acts, in tx, on a host's report about an instance in the
// middle of a move (api.InstanceMigration): when the destination reports
// it at the instance's epoch with a domain (running, for a live move) and
// no error, the move is done: Migration is cleared, and a live instance's
// ports are bound to the destination. When the source reports that a live
// migration failed, the instance goes back to the source. Any other
// report, or one about an older epoch, changes nothing.
func EndMigration(tx *store.Tx, host string, rr api.ResourceReport) (string, error) {
	if rr.Key.Kind != "instance" {
		return MigrationGoesOn, nil
	}
	prev, err := tx.Get(rr.Key)
	if errors.Is(err, store.ErrNotFound) {
		return MigrationGoesOn, nil
	}
	if err != nil {
		return MigrationGoesOn, err
	}
	var s api.InstanceSpec
	if err := json.Unmarshal(prev.Spec, &s); err != nil {
		return MigrationGoesOn, err
	}
	m := s.Migration
	if m == nil || rr.Epoch < prev.Epoch {
		return MigrationGoesOn, nil
	}
	outcome := MigrationGoesOn
	switch {
	case host == s.Host && rr.Message == "" && (rr.State == string(computespec.PowerRunning) ||
		!m.Live && rr.State == string(computespec.PowerStopped)):
		outcome = MigrationDone
		s.Migration = nil
		if m.Live {
			a := &Admission{Tx: tx, Admin: true, System: true}
			if err := rebindPorts(a, &prev, &s, m.Source); err != nil {
				return MigrationGoesOn, err
			}
		}
		tx.SetPlacement(rr.Key, api.PlacementStatus{State: api.PlacementPlaced, Host: s.Host,
			Message: fmt.Sprintf("migrated from %s to %s%s", m.Source, s.Host, map[bool]string{true: " (live)"}[m.Live])})
	case host == m.Source && m.Live && strings.HasPrefix(rr.Message, computespec.LiveMigrationFailed):
		outcome = MigrationFailed
		to := s.Host
		s.Host, s.Migration = m.Source, nil
		tx.SetPlacement(rr.Key, api.PlacementStatus{State: api.PlacementRefused, Host: s.Host,
			Message: fmt.Sprintf("live migration to %s failed; the instance stays on %s: %s", to, m.Source,
				strings.TrimPrefix(rr.Message, computespec.LiveMigrationFailed))})
	default:
		return MigrationGoesOn, nil
	}
	if err := putSpec(tx, api.Resource{Kind: prev.Kind, Project: prev.Project, Name: prev.Name}, &s); err != nil {
		return MigrationGoesOn, err
	}
	return outcome, nil
}
