package api

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

type principalKey struct{}

func principal(r *http.Request) api.Token {
	t, _ := r.Context().Value(principalKey{}).(api.Token)
	return t
}

// auth resolves the bearer token; a missing or unknown one is 401.
func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		secret, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || secret == "" {
			writeError(w, &api.Error{Code: http.StatusUnauthorized, Message: "missing bearer token"})
			return
		}
		tok, err := s.store.LookupToken(strings.TrimSpace(secret))
		if err == nil && tok.Role == api.RoleProject {
			// The token belongs to the project it was made for, by
			// identity: deleted (or deleted and made again), it is void.
			err = s.store.View(func(tx *store.Tx) error {
				p, err := tx.Get(api.Key{Kind: "project", Name: tok.Project})
				if err == nil && !p.Created.Equal(tok.ProjectCreated) {
					err = store.ErrNotFound
				}
				return err
			})
		}
		if err != nil {
			writeError(w, &api.Error{Code: http.StatusUnauthorized, Message: "invalid token"})
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, tok)))
	}
}

// actor names who made a change, for the log line that records it.
func actor(r *http.Request) slog.Attr {
	p := principal(r)
	attrs := []any{"token", p.Name, "token_id", p.ID, "role", p.Role}
	if p.Project != "" {
		attrs = append(attrs, "project", p.Project)
	}
	if p.Host != "" {
		attrs = append(attrs, "host", p.Host)
	}
	return slog.Group("by", attrs...)
}

func forbidden(format string, args ...any) *api.Error {
	return &api.Error{Code: http.StatusForbidden, Message: fmt.Sprintf(format, args...)}
}

func requireAdmin(r *http.Request) *api.Error {
	if p := principal(r); p.Role != api.RoleAdmin {
		return forbidden("%s token %q may not do this; an admin token is required", p.Role, p.Name)
	}
	return nil
}

// hostRequest reads what a host sends about itself: the host named in
// the path, which the caller must be (or an admin), and the body, decoded
// strictly into v. On an error it answers it and returns false.
func (s *Server) hostRequest(w http.ResponseWriter, r *http.Request, v any) (host string, ok bool) {
	host = r.PathValue("host")
	if err := requireHost(r, host); err != nil {
		s.errorFor(w, err)
		return "", false
	}
	if err := decodeStrict(r, v, ""); err != nil {
		s.errorFor(w, err)
		return "", false
	}
	return host, true
}

// requireHost lets an admin act for any host and an agent only for the
// host its token names; host must be a valid name either way.
func requireHost(r *http.Request, host string) error {
	if fe := api.ValidateName("host", host); fe != nil {
		return fe
	}
	switch p := principal(r); {
	case p.Role == api.RoleAdmin:
		return nil
	case p.Role == api.RoleAgent && p.Host == host:
		return nil
	case p.Role == api.RoleAgent:
		return forbidden("agent token %q speaks for host %q, not %q", p.Name, p.Host, host)
	default:
		return forbidden("%s token %q may not act for hosts", p.Role, p.Name)
	}
}

// NewSecret returns a fresh random token secret for role.
func NewSecret(role string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "strata_" + role + "_" + base64.RawURLEncoding.EncodeToString(b), nil
}

func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// IssueToken creates a token and returns it with its secret.
func IssueToken(st *store.Store, req api.TokenRequest) (api.NewToken, error) {
	secret, err := NewSecret(req.Role)
	if err != nil {
		return api.NewToken{}, err
	}
	t := api.Token{ID: newID(), Name: req.Name, Role: req.Role, Project: req.Project, Host: req.Host, Created: time.Now().UTC()}
	if req.Role == api.RoleProject {
		err := st.View(func(tx *store.Tx) error {
			p, err := tx.Get(api.Key{Kind: "project", Name: req.Project})
			t.ProjectCreated = p.Created
			return err
		})
		if err != nil {
			return api.NewToken{}, err
		}
	}
	if err := st.PutToken(t, secret); err != nil {
		return api.NewToken{}, err
	}
	return api.NewToken{Token: t, Secret: secret}, nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	if e := requireAdmin(r); e != nil {
		writeError(w, e)
		return
	}
	ts, err := s.store.Tokens()
	if err != nil {
		s.errorFor(w, err)
		return
	}
	if ts == nil {
		ts = []api.Token{}
	}
	writeJSON(w, http.StatusOK, ts)
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	if e := requireAdmin(r); e != nil {
		writeError(w, e)
		return
	}
	var req api.TokenRequest
	if err := decodeStrict(r, &req, ""); err != nil {
		s.errorFor(w, err)
		return
	}
	if fe := api.ValidateName("name", req.Name); fe != nil {
		s.errorFor(w, fe)
		return
	}
	if req.Role != api.RoleAgent && req.Host != "" {
		s.errorFor(w, api.Fieldf("host", "only an %q token names a host", api.RoleAgent))
		return
	}
	switch req.Role {
	case api.RoleAdmin, api.RoleAgent:
		if req.Project != "" {
			s.errorFor(w, api.Fieldf("project", "only a %q token has a project", api.RoleProject))
			return
		}
		if req.Role == api.RoleAgent {
			// An agent speaks for one host: its plan holds every
			// instance's user data and keys on that host, no more.
			if fe := api.ValidateName("host", req.Host); fe != nil {
				s.errorFor(w, fe)
				return
			}
		}
	case api.RoleProject:
		err := s.store.View(func(tx *store.Tx) error {
			_, err := tx.Get(api.Key{Kind: "project", Name: req.Project})
			return err
		})
		if errors.Is(err, store.ErrNotFound) {
			s.errorFor(w, api.Fieldf("project", "project %q does not exist", req.Project))
			return
		}
	default:
		s.errorFor(w, api.Fieldf("role", "%q is not one of admin, agent, project", req.Role))
		return
	}
	nt, err := IssueToken(s.store, req)
	if err != nil {
		s.errorFor(w, err)
		return
	}
	s.log.Info("token created", "id", nt.ID, "name", nt.Name, "role", nt.Role, "project", nt.Project, "host", nt.Host, actor(r))
	writeJSON(w, http.StatusCreated, nt)
}

func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) {
	if e := requireAdmin(r); e != nil {
		writeError(w, e)
		return
	}
	if err := s.store.DeleteToken(r.PathValue("id")); err != nil {
		s.errorFor(w, err)
		return
	}
	s.log.Info("token deleted", "id", r.PathValue("id"), actor(r))
	writeJSON(w, http.StatusOK, map[string]bool{"deleted": true})
}
