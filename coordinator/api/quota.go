package api

import (
	"errors"
	"net/http"

	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// projectQuota answers GET /v1/projects/{project}/quota: the project's
// limits and usage, for an admin or the project's own tokens.
func (s *Server) projectQuota(w http.ResponseWriter, r *http.Request) {
	project := r.PathValue("project")
	switch p := principal(r); {
	case p.Role == api.RoleAdmin:
	case p.Role == api.RoleProject && p.Project == project:
	default:
		writeError(w, forbidden("token %q may not read project %q's quota", p.Name, project))
		return
	}
	out := api.QuotaUsage{Project: project}
	err := s.store.View(func(tx *store.Tx) error {
		if _, err := tx.Get(api.Key{Kind: "project", Name: project}); errors.Is(err, store.ErrNotFound) {
			return &api.Error{Code: http.StatusNotFound, Message: "project " + project + " does not exist"}
		}
		var err error
		if out.Limits, err = registry.Limits(tx, project); err != nil {
			return err
		}
		out.Usage, err = registry.Usage(tx, project)
		return err
	})
	if err != nil {
		s.errorFor(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
