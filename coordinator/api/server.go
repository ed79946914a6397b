// Package api is the coordinator's REST/JSON API under /v1: generic
// resource routes built from the kind registry, host views from gossip,
// long-polled host plans, status reports, tokens and the OpenAPI document.
package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-infra/strata/coordinator/commit"
	"github.com/strata-infra/strata/coordinator/membership"
	"github.com/strata-infra/strata/coordinator/planscope"
	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/version"
)

// HostSource is the gossip membership view: every agent the pool knows,
// with liveness and meta. The coordinator never polls hosts.
type HostSource interface {
	Hosts() []api.Host
}

// Server serves the API.
type Server struct {
	store   *store.Store
	commit  *commit.Service
	reg     *registry.Registry
	hosts   HostSource
	log     *slog.Logger
	mux     *routeMux
	maxWait time.Duration
	metrics *metrics
	// scope decides what each host's plan holds and whom a commit wakes.
	scope *planscope.Scope

	keysApplied func() uint64
	rotateMu    sync.Mutex // one gossip key rotation at a time
}

// Options configure a Server.
type Options struct {
	Store    *store.Store
	Registry *registry.Registry
	Hosts    HostSource
	Logger   *slog.Logger
	// MaxWait caps a plan long-poll (default 60 s).
	MaxWait time.Duration
	// Metrics registers the API's metrics; nil means none.
	Metrics prometheus.Registerer
	// KeysApplied is the last epoch whose gossip keyring the coordinator's
	// own member holds (nil: not waited for).
	KeysApplied func() uint64
}

// MaxBodyBytes bounds request bodies.
const MaxBodyBytes = 1 << 20

// New builds the server and its routes.
func New(o Options) *Server {
	if o.MaxWait == 0 {
		o.MaxWait = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{store: o.Store, reg: o.Registry, hosts: o.Hosts, log: o.Logger, mux: &routeMux{ServeMux: http.NewServeMux()}, maxWait: o.MaxWait, metrics: newMetrics(o.Metrics), keysApplied: o.KeysApplied}
	if sched := o.Registry.Scheduler; sched != nil && o.Store != nil {
		// The scheduler follows the store's commits from here on, and the
		// hosts from gossip (membership.FeedScheduler keeps them current).
		if err := o.Registry.Attach(o.Store); err != nil {
			o.Logger.Error("scheduler cannot read the store; placements will fail", "err", err)
		}
		if o.Hosts != nil {
			sched.SetHosts(membership.SchedulerHosts(o.Hosts.Hosts()))
		}
	}
	if o.Store != nil {
		sc, err := planscope.New(o.Store, o.Registry, o.Store.Retain())
		if err != nil {
			o.Logger.Error("plan scope cannot read the store; every host gets every resource", "err", err)
		}
		s.scope = sc
	}
	if o.Metrics != nil && o.Store != nil {
		o.Metrics.MustRegister(newClusterCollector(o.Store, o.Hosts, s.need), version.BuildInfo("coordinator"))
	}
	var hosts func() []api.Host
	if o.Hosts != nil {
		hosts = o.Hosts.Hosts
	}
	s.commit = commit.New(o.Store, o.Registry, hosts, o.Logger)
	s.routes()
	return s
}

// Commit is the commit service the API writes through; the coordinator's
// controllers (scheduler, recovery) write through the same one.
func (s *Server) Commit() *commit.Service { return s.commit }

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /healthz", s.healthz)
	m.HandleFunc("GET /readyz", s.readyz)
	m.HandleFunc("GET /v1/openapi.json", s.openAPI)
	m.HandleFunc("GET /v1/version", s.auth(s.version))
	m.HandleFunc("GET /v1/status", s.auth(s.clusterStatus))
	m.HandleFunc("GET /v1/hosts", s.auth(s.listHosts))
	m.HandleFunc("GET /v1/hosts/{host}", s.auth(s.getHost))
	m.HandleFunc("GET /v1/hosts/{host}/plan", s.auth(s.hostPlan))
	m.HandleFunc("POST /v1/hosts/{host}/status", s.auth(s.hostReport))
	m.HandleFunc("PUT /v1/hosts/{host}/identity", s.auth(s.registerIdentity))
	m.HandleFunc("POST /v1/gossip/rotate-key", s.auth(s.rotateGossipKey))
	m.HandleFunc("POST /v1/hosts/{host}/drain", s.auth(s.setDrain(true)))
	m.HandleFunc("POST /v1/hosts/{host}/enable", s.auth(s.setDrain(false)))
	m.HandleFunc("GET /v1/tokens", s.auth(s.listTokens))
	m.HandleFunc("POST /v1/tokens", s.auth(s.createToken))
	m.HandleFunc("DELETE /v1/tokens/{id}", s.auth(s.deleteToken))
	m.HandleFunc("GET /v1/kinds", s.auth(s.listKinds))
	m.HandleFunc("GET /v1/backup", s.auth(s.backup))
	m.HandleFunc("GET /v1/projects/{project}/quota", s.auth(s.projectQuota))
	m.HandleFunc("POST /v1/dry-run", s.auth(s.dryRun))
	for _, k := range s.reg.Kinds() {
		base := "/v1/" + k.Plural
		if k.Scope == registry.Project {
			base = "/v1/projects/{project}/" + k.Plural
		}
		h := &kindHandler{s: s, k: k}
		m.HandleFunc("GET "+base, s.auth(h.list))
		m.HandleFunc("POST "+base, s.auth(h.create))
		m.HandleFunc("GET "+base+"/{name}", s.auth(h.get))
		m.HandleFunc("PUT "+base+"/{name}", s.auth(h.put))
		m.HandleFunc("DELETE "+base+"/{name}", s.auth(h.delete))
	}
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &api.Error{Code: http.StatusNotFound, Message: "no such path: " + r.URL.Path})
	})
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	start := time.Now()
	s.mux.ServeHTTP(rw, r)
	s.metrics.observe(r, rw.code, time.Since(start))
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *api.Error) {
	if e.Code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="strata"`)
	}
	writeJSON(w, e.Code, api.ErrorBody{Error: e})
}

// errorFor maps an internal error to its HTTP answer.
func (s *Server) errorFor(w http.ResponseWriter, err error) {
	writeError(w, s.apiError(err))
}

// apiError is the API's answer to err.
func (s *Server) apiError(err error) *api.Error {
	var fe *api.FieldError
	var ce *registry.Conflict
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &fe):
		return &api.Error{Code: http.StatusBadRequest, Field: fe.Field, Message: fe.Message}
	case errors.As(err, &ce):
		return &api.Error{Code: http.StatusConflict, Message: ce.Message}
	case errors.Is(err, store.ErrNotFound):
		return &api.Error{Code: http.StatusNotFound, Message: err.Error()}
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || strings.Contains(err.Error(), syscall.ENOSPC.Error()):
		// (bbolt flattens some write errors to text.)
		// Nothing was committed; the client may retry once there is room.
		s.log.Error("store is out of space", "err", err)
		return &api.Error{Code: http.StatusInsufficientStorage, Message: "the coordinator's store is out of disk space; nothing was changed: " + err.Error()}
	case errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EIO):
		s.log.Error("store cannot be written", "err", err)
		return &api.Error{Code: http.StatusServiceUnavailable, Message: "the coordinator's store cannot be written; nothing was changed: " + err.Error()}
	default:
		s.log.Error("request failed", "err", err)
		return &api.Error{Code: http.StatusInternalServerError, Message: "internal error: " + err.Error()}
	}
}
