package api

import (
	"bytes"

	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// noteMigrations ends the moves a host's report finishes (the destination
// has the instance) or fails (the source gave up a live migration), each
// in a commit of the coordinator's own (registry.EndMigration).
func (s *Server) noteMigrations(rep api.HostReport) {
	// One read first: a commit only for the instances that are moving.
	var moving []api.ResourceReport
	_ = s.store.View(func(tx *store.Tx) error {
		for _, rr := range rep.Resources {
			if rr.Key.Kind != "instance" {
				continue
			}
			if res, err := tx.Get(rr.Key); err == nil && bytes.Contains(res.Spec, []byte(`"migration"`)) {
				moving = append(moving, rr)
			}
		}
		return nil
	})
	for _, rr := range moving {
		var outcome string
		_, _, err := s.store.Update(func(tx *store.Tx) error {
			var err error
			outcome, err = registry.EndMigration(tx, rep.Host, rr)
			return err
		})
		switch {
		case err != nil:
			s.log.Warn("end an instance's migration", "instance", rr.Key.String(), "host", rep.Host, "err", err)
		case outcome == registry.MigrationDone:
			s.log.Info("instance migrated", "instance", rr.Key.String(), "host", rep.Host)
		case outcome == registry.MigrationFailed:
			s.log.Warn("live migration failed; instance stays on its source", "instance", rr.Key.String(), "host", rep.Host, "error", rr.Message)
		}
	}
}
