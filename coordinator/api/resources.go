package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/contract"
)

// kindHandler serves the generic routes of one kind.
type kindHandler struct {
	s *Server
	k *registry.Kind
}

// access decides whether the caller may touch this kind in this project;
// write is true for create, update and delete.
func (h *kindHandler) access(r *http.Request, name string, write bool) *api.Error {
	p := principal(r)
	switch p.Role {
	case api.RoleAdmin:
		return nil
	case api.RoleProject:
		if h.k.Scope == registry.Project {
			if proj := r.PathValue("project"); proj != p.Project {
				return forbidden("token %q is scoped to project %q and may not reach project %q", p.Name, p.Project, proj)
			}
			if write && h.k.AdminWrite {
				return forbidden("only an admin may change %s", h.k.Plural)
			}
			return nil
		}
		if write && h.k.AdminWrite {
			return forbidden("only an admin may change %s", h.k.Plural)
		}
		if h.k.Name == "project" {
			if name != "" && name != p.Project {
				return forbidden("token %q is scoped to project %q and may not reach project %q", p.Name, p.Project, name)
			}
			return nil
		}
		if !write && !h.k.PublicRead {
			return forbidden("project tokens may not read %s", h.k.Plural)
		}
		return nil
	}
	return forbidden("%s token %q may not use the resource API", p.Role, p.Name)
}

func (h *kindHandler) key(r *http.Request, name string) api.Key {
	k := api.Key{Kind: h.k.Name, Name: name}
	if h.k.Scope == registry.Project {
		k.Project = r.PathValue("project")
	}
	return k
}

func (h *kindHandler) list(w http.ResponseWriter, r *http.Request) {
	if e := h.access(r, "", false); e != nil {
		writeError(w, e)
		return
	}
	out := []api.Resource{}
	hosts := h.s.hostsForStatus()
	err := h.s.store.View(func(tx *store.Tx) error {
		rs, err := tx.List(h.k.Name, h.key(r, "").Project, false)
		if err != nil {
			return err
		}
		p := principal(r)
		for _, res := range rs {
			if h.k.Name == "project" && p.Role == api.RoleProject && res.Name != p.Project {
				continue
			}
			out = append(out, h.s.withStatus(tx, res, hosts))
		}
		return nil
	})
	if err != nil {
		h.s.errorFor(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *kindHandler) get(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if e := h.access(r, name, false); e != nil {
		writeError(w, e)
		return
	}
	var res api.Resource
	hosts := h.s.hostsForStatus()
	err := h.s.store.View(func(tx *store.Tx) error {
		var err error
		if res, err = tx.Get(h.key(r, name)); err != nil {
			return err
		}
		res = h.s.withStatus(tx, res, hosts)
		return nil
	})
	if err != nil {
		h.s.errorFor(w, err)
		return
	}
	// The epoch that last changed the resource is its version: a client
	// doing read-modify-write sends it back as If-Match.
	w.Header().Set("ETag", strconv.Quote(strconv.FormatUint(res.Epoch, 10)))
	writeJSON(w, http.StatusOK, res)
}

func (h *kindHandler) create(w http.ResponseWriter, r *http.Request) { h.write(w, r, "", true) }

func (h *kindHandler) put(w http.ResponseWriter, r *http.Request) {
	h.write(w, r, r.PathValue("name"), false)
}

// write creates (POST: must not exist) or creates-or-updates (PUT).
func (h *kindHandler) write(w http.ResponseWriter, r *http.Request, pathName string, mustBeNew bool) {
	var req api.ResourceRequest
	if err := decodeStrict(r, &req, ""); err != nil {
		h.s.errorFor(w, err)
		return
	}
	name := req.Name
	if pathName != "" {
		if name != "" && name != pathName {
			h.s.errorFor(w, api.Fieldf("name", "%q does not match the name in the path %q", name, pathName))
			return
		}
		name = pathName
	}
	if fe := api.ValidateName("name", name); fe != nil {
		h.s.errorFor(w, fe)
		return
	}
	if e := h.access(r, name, true); e != nil {
		writeError(w, e)
		return
	}
	spec := h.k.NewSpec()
	if len(req.Spec) == 0 || string(req.Spec) == "null" {
		req.Spec = json.RawMessage(`{}`)
	}
	if err := decodeBytes(req.Spec, spec, "spec"); err != nil {
		h.s.errorFor(w, err)
		return
	}
	if err := checkLists(spec, "spec"); err != nil {
		h.s.errorFor(w, err)
		return
	}
	key := h.key(r, name)
	ifMatch, err := parseIfMatch(r)
	if err != nil {
		h.s.errorFor(w, err)
		return
	}
	var result api.PutResult
	created := false
	facts := h.s.contractFacts(key.Kind) // read outside the write transaction (bbolt)
	epoch, changed, err := h.s.store.Update(func(tx *store.Tx) error {
		if key.Project != "" {
			if _, err := tx.Get(api.Key{Kind: "project", Name: key.Project}); errors.Is(err, store.ErrNotFound) {
				return &api.Error{Code: http.StatusNotFound, Message: "project " + key.Project + " does not exist"}
			}
		}
		prev, getErr := tx.Get(key)
		exists := getErr == nil
		if mustBeNew && exists {
			return registry.Conflictf("%s %q already exists", h.k.Name, name)
		}
		if err := h.precondition(name, ifMatch, prev, exists); err != nil {
			return err
		}
		created = !exists
		before, err := h.s.contractBefore(tx, key, facts)
		if err != nil {
			return err
		}
		res := api.Resource{Kind: key.Kind, Project: key.Project, Name: name}
		if h.k.Admit != nil {
			adm := h.s.admission(r, tx)
			adm.Facts = facts
			if exists {
				adm.Prev = &prev
			}
			if err := h.k.Admit(adm, &res, spec); err != nil {
				return err
			}
		}
		buf, err := json.Marshal(spec)
		if err != nil {
			return err
		}
		res.Spec = buf
		var prevp *api.Resource
		if exists {
			prevp = &prev
		}
		if err := registry.CheckQuota(tx, res, prevp); err != nil {
			return err
		}
		if exists {
			result.Kept = keptFields(h.k.Assigned, req.Spec, buf, prev.Spec)
		}
		stored, _, err := tx.Put(res)
		result.Resource = stored
		if err != nil {
			return err
		}
		return h.s.contractAfter(tx, key, before, facts)
	})
	if err != nil {
		h.s.errorFor(w, err)
		return
	}
	result.Changed, result.Epoch = changed, epoch
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	if changed {
		h.s.log.Info("resource written", "key", key.String(), "epoch", epoch, "created", created, actor(r))
	}
	writeJSON(w, code, result)
}

func (h *kindHandler) delete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if e := h.access(r, name, true); e != nil {
		writeError(w, e)
		return
	}
	key := h.key(r, name)
	ifMatch, err := parseIfMatch(r)
	if err != nil {
		h.s.errorFor(w, err)
		return
	}
	facts := h.s.contractFacts(key.Kind)
	epoch, changed, err := h.s.store.Update(func(tx *store.Tx) error {
		res, err := tx.Get(key)
		if perr := h.precondition(name, ifMatch, res, err == nil); perr != nil {
			return perr
		}
		if err != nil {
			return err
		}
		before, err := h.s.contractBefore(tx, key, facts)
		if err != nil {
			return err
		}
		if h.k.BeforeDelete != nil {
			if err := h.k.BeforeDelete(h.s.admission(r, tx), res); err != nil {
				return err
			}
		}
		if _, err = tx.Delete(key); err != nil {
			return err
		}
		return h.s.contractAfter(tx, key, before, facts)
	})
	if err != nil {
		h.s.errorFor(w, err)
		return
	}
	h.s.log.Info("resource deleted", "key", key.String(), "epoch", epoch, "deleted", changed, actor(r))
	writeJSON(w, http.StatusOK, api.DeleteResult{Deleted: changed, Epoch: epoch})
}

// kindInfo is what stratactl learns about kinds to apply files generically.
type kindInfo struct {
	Name       string `json:"name"`
	Plural     string `json:"plural"`
	Scope      string `json:"scope"`
	Order      int    `json:"order"`
	AdminWrite bool   `json:"admin_write"`
}

func (s *Server) listKinds(w http.ResponseWriter, r *http.Request) {
	out := []kindInfo{}
	for _, k := range s.reg.Kinds() {
		scope := "global"
		if k.Scope == registry.Project {
			scope = "project"
		}
		out = append(out, kindInfo{Name: k.Name, Plural: k.Plural, Scope: scope, Order: k.Order, AdminWrite: k.AdminWrite})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) admission(r *http.Request, tx *store.Tx) *registry.Admission {
	a := &registry.Admission{Tx: tx, Admin: principal(r).Role == api.RoleAdmin, Settings: s.reg.Settings, Hosts: func() []api.Host { return nil },
		Scheduler: s.reg.Scheduler}
	if s.hosts != nil {
		a.Hosts = s.hosts.Hosts
	}
	return a
}

// contractBefore is the contract's verdict before a write of k, so the
// write is refused only for what it breaks (nil for kinds hosts do not
// apply on the network side).
func (s *Server) contractBefore(tx *store.Tx, k api.Key, facts *contract.Facts) ([]contract.Violation, error) {
	if !registry.InContract(k.Kind) {
		return nil, nil
	}
	return registry.ContractViolations(tx, k.Project, facts)
}

// contractAfter refuses a write of k that leaves a state some host would
// refuse to apply.
func (s *Server) contractAfter(tx *store.Tx, k api.Key, before []contract.Violation, facts *contract.Facts) error {
	if !registry.InContract(k.Kind) {
		return nil
	}
	return registry.CheckContract(tx, k, before, facts)
}

// contractFacts is what the coordinator knows of hosts that the contract
// needs: the physical networks each host maps and its L2 driver (hosts
// whose reports do not say are not checked), and the hosts a resource may name. A known host is
// one an agent token was issued for (registered), one gossip has seen
// since this coordinator started (alive, suspect, dead or left), or one
// that ever reported. It reads the store, so call it outside a write
// transaction.
func (s *Server) contractFacts(kind string) *contract.Facts {
	if !registry.InContract(kind) {
		return nil
	}
	reps, err := s.store.Reports()
	if err != nil {
		s.log.Warn("host reports for admission", "err", err)
		return nil
	}
	toks, err := s.store.Tokens()
	if err != nil {
		s.log.Warn("agent tokens for admission", "err", err)
		return nil
	}
	f := &contract.Facts{Physnets: map[string][]string{}, Hosts: map[string]bool{}, L2Drivers: map[string]string{}}
	for h, rep := range reps {
		f.Hosts[h] = true
		if rep.Physnets != nil {
			f.Physnets[h] = rep.Physnets
		}
		if rep.Network != nil && rep.Network.L2Driver != "" {
			f.L2Drivers[h] = rep.Network.L2Driver
		}
	}
	for _, t := range toks {
		if t.Role == api.RoleAgent && t.Host != "" {
			f.Hosts[t.Host] = true
		}
	}
	if s.hosts != nil {
		for _, h := range s.hosts.Hosts() {
			f.Hosts[h.Name] = true
		}
	}
	return f
}

// parseIfMatch reads an If-Match header holding a resource epoch ("12" or
// 12); nil when absent.
func parseIfMatch(r *http.Request) (*uint64, error) {
	v := r.Header.Get("If-Match")
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseUint(strings.Trim(strings.TrimPrefix(v, "W/"), `"`), 10, 64)
	if err != nil {
		return nil, api.Fieldf("If-Match", "%q is not a resource epoch (the ETag of a GET)", v)
	}
	return &n, nil
}

// precondition refuses a write whose If-Match names a version other than
// the stored one (412), so a read-modify-write never overwrites, or
// deletes, a change it did not see.
func (h *kindHandler) precondition(name string, ifMatch *uint64, prev api.Resource, exists bool) error {
	if ifMatch == nil || (exists && prev.Epoch == *ifMatch) {
		return nil
	}
	now := "is gone"
	if exists {
		now = fmt.Sprintf("was changed at epoch %d", prev.Epoch)
	}
	return &api.Error{Code: http.StatusPreconditionFailed,
		Message: fmt.Sprintf("%s %q %s since it was read at epoch %d; read it again", h.k.Name, name, now, *ifMatch)}
}

// keptFields names the assigned spec fields a request left out whose
// admitted value is the stored one (segmentation id, MAC, addresses,
// placement) that an update keeps. A write reports them, so what it
// merged is never silent.
func keptFields(assigned []string, request, admitted, stored json.RawMessage) []string {
	var req, adm, old map[string]json.RawMessage
	if json.Unmarshal(request, &req) != nil || json.Unmarshal(admitted, &adm) != nil || json.Unmarshal(stored, &old) != nil {
		return nil
	}
	var kept []string
	for _, f := range assigned {
		v, set := adm[f]
		if _, given := req[f]; given || !set {
			continue
		}
		if o, ok := old[f]; ok && jsonSame(o, v) {
			kept = append(kept, "spec."+f)
		}
	}
	sort.Strings(kept)
	return kept
}

func jsonSame(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
