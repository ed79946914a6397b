package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/strata-infra/strata/coordinator/commit"
	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// kindHandler serves the generic routes of one kind.
type kindHandler struct {
	s *Server
	k *registry.Kind
}

// access decides whether the caller may touch this kind in this project;
// write is true for create, update and delete.
func (h *kindHandler) access(r *http.Request, name string, write bool) *api.Error {
	return h.accessIn(r, r.PathValue("project"), name, write)
}

// accessIn is access to a resource of project proj (for a project-scoped kind).
func (h *kindHandler) accessIn(r *http.Request, proj, name string, write bool) *api.Error {
	p := principal(r)
	switch p.Role {
	case api.RoleAdmin:
		return nil
	case api.RoleProject:
		if h.k.Scope == registry.Project {
			if proj != p.Project {
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
	key := h.key(r, name)
	p, err := h.putFor(r, key, req.Spec, mustBeNew)
	if err != nil {
		h.s.errorFor(w, err)
		return
	}
	if p.IfMatch, err = parseIfMatch(r); err != nil {
		h.s.errorFor(w, err)
		return
	}
	res, err := h.s.commit.Put(p)
	if err != nil {
		h.s.errorFor(w, err)
		return
	}
	code := http.StatusOK
	if res.Created {
		code = http.StatusCreated
	}
	if res.Changed {
		h.s.log.Info("resource written", "key", key.String(), "epoch", res.Epoch, "created", res.Created, actor(r))
	}
	writeJSON(w, code, res.PutResult)
}

// putFor checks one write of key as the API receives it (the name, the
// caller's access, the spec decoded strictly, list caps) and returns the
// commit it asks for.
func (h *kindHandler) putFor(r *http.Request, key api.Key, raw json.RawMessage, mustBeNew bool) (commit.Put, error) {
	if fe := api.ValidateName("name", key.Name); fe != nil {
		return commit.Put{}, fe
	}
	if e := h.accessIn(r, key.Project, key.Name, true); e != nil {
		return commit.Put{}, e
	}
	spec := h.k.NewSpec()
	if len(raw) == 0 || string(raw) == "null" {
		raw = json.RawMessage(`{}`)
	}
	if err := decodeBytes(raw, spec, "spec"); err != nil {
		return commit.Put{}, err
	}
	if err := checkLists(spec, "spec"); err != nil {
		return commit.Put{}, err
	}
	return commit.Put{Key: key, Spec: spec, Request: raw, MustBeNew: mustBeNew, Who: who(r)}, nil
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
	res, err := h.s.commit.Delete(commit.Delete{Key: key, IfMatch: ifMatch, Who: who(r)})
	if err != nil {
		h.s.errorFor(w, err)
		return
	}
	h.s.log.Info("resource deleted", "key", key.String(), "epoch", res.Epoch, "deleted", res.Deleted, actor(r))
	writeJSON(w, http.StatusOK, res)
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

// who is on whose behalf a request writes.
func who(r *http.Request) commit.Who {
	return commit.Who{Admin: principal(r).Role == api.RoleAdmin}
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
