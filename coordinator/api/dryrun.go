package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/strata-infra/strata/coordinator/commit"
	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// dryRun admits a list of resources in order in one transaction that is
// then rolled back, and answers what each write would do: the same
// checks as the writes themselves (name, access, strict decoding,
// admission, quota, the host contract), each resource seeing the ones
// before it. A refusal names the resource by its index.
func (s *Server) dryRun(w http.ResponseWriter, r *http.Request) {
	var req api.DryRunRequest
	if err := decodeStrict(r, &req, ""); err != nil {
		s.errorFor(w, err)
		return
	}
	if len(req.Resources) == 0 {
		s.errorFor(w, api.Fieldf("resources", "must hold at least one resource"))
		return
	}
	if len(req.Resources) > maxDryRunResources {
		s.errorFor(w, api.Fieldf("resources", "at most %d resources per dry run", maxDryRunResources))
		return
	}
	puts := make([]commit.Put, len(req.Resources))
	before := make([]*api.Resource, len(req.Resources))
	for i, d := range req.Resources {
		k, ok := s.reg.Get(d.Kind)
		if !ok {
			s.errorFor(w, api.Fieldf(fmt.Sprintf("resources[%d].kind", i), "%q is not a kind this coordinator serves", d.Kind))
			return
		}
		if scoped := k.Scope == registry.Project; scoped != (d.Project != "") {
			what := "must be set: a " + k.Name + " lives in a project"
			if !scoped {
				what = "must be empty: a " + k.Name + " is cluster-wide"
			}
			s.errorFor(w, api.Fieldf(fmt.Sprintf("resources[%d].project", i), "%s", what))
			return
		}
		h := &kindHandler{s: s, k: k}
		key := api.Key{Kind: k.Name, Project: d.Project, Name: d.Name}
		p, err := h.putFor(r, key, d.Spec, false)
		if err != nil {
			writeError(w, indexed(s.apiError(err), i, key))
			return
		}
		puts[i] = p
	}
	// What is stored now, for the diff; a resource the run itself writes
	// twice shows its state before the run.
	err := s.store.View(func(tx *store.Tx) error {
		for i, p := range puts {
			if res, err := tx.Get(p.Key); err == nil {
				before[i] = &res
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.errorFor(w, err)
		return
	}
	results, err := s.commit.DryRun(puts)
	var dre *commit.DryRunError
	if errors.As(err, &dre) {
		writeError(w, indexed(s.apiError(dre.Err), dre.Index, puts[dre.Index].Key))
		return
	}
	if err != nil {
		s.errorFor(w, err)
		return
	}
	out := api.DryRunResult{Results: make([]api.DryRunItem, len(results))}
	for i, res := range results {
		it := api.DryRunItem{Kind: res.Resource.Kind, Project: res.Resource.Project, Name: res.Resource.Name,
			After: res.Resource.Spec, Kept: res.Kept, Action: api.DryRunUnchanged}
		switch {
		case res.Created:
			it.Action = api.DryRunCreated
		case res.Changed:
			it.Action = api.DryRunUpdated
		}
		if before[i] != nil {
			it.Before = before[i].Spec
		}
		out.Results[i] = it
	}
	writeJSON(w, http.StatusOK, out)
}

// indexed names resource i of a dry run in its error.
func indexed(e *api.Error, i int, key api.Key) *api.Error {
	out := *e
	prefix := fmt.Sprintf("resources[%d]", i)
	if out.Field != "" {
		out.Field = prefix + "." + out.Field
	}
	out.Message = fmt.Sprintf("%s (%s): %s", prefix, key, out.Message)
	return &out
}

// maxDryRunResources bounds one dry run (the body is bounded too, by
// MaxBodyBytes): it holds the store's write lock while it runs.
const maxDryRunResources = 1000
