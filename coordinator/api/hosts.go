package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/strata-infra/strata/coordinator/recovery"
	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// hostViews merges gossip (liveness, meta) with the last report of each
// host. A host that reported but is not in this coordinator's gossip view
// (a coordinator just restarted, or a dead host reaped) shows as unknown
// while resources are placed on it: only SWIM may call a host dead. One
// with nothing on it is gone and not listed: no ghost entries.
func (s *Server) hostViews() ([]api.Host, error) {
	reports, err := s.store.Reports()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []api.Host
	if s.hosts != nil {
		for _, h := range s.hosts.Hosts() {
			if rep, ok := reports[h.Name]; ok {
				rep := rep
				h.Report = &rep
			}
			seen[h.Name] = true
			out = append(out, h)
		}
	}
	for name, rep := range reports {
		if seen[name] {
			continue
		}
		rep := rep
		out = append(out, api.Host{Name: name, State: api.StateUnknown, AppliedEpoch: rep.AppliedEpoch, Report: &rep})
	}
	out, err = s.countPlaced(out, seen, reports)
	if err != nil {
		return nil, err
	}
	kept := out[:0]
	for _, h := range out {
		if h.State != api.StateUnknown || h.Resources > 0 {
			kept = append(kept, h)
		}
	}
	out = kept
	// Drained is desired state, held by the coordinator, not by gossip.
	_ = s.store.View(func(tx *store.Tx) error {
		cfgs, err := tx.List("hostconfig", "", false)
		for _, c := range cfgs {
			for i := range out {
				if out[i].Name == c.Name {
					hc := registry.HostConfig(c)
					out[i].Drained, out[i].Reason = hc.Drained, hc.Reason
				}
			}
		}
		for _, f := range tx.Failing("") {
			for i := range out {
				if out[i].Name == f.Host {
					out[i].Failing = append(out[i].Failing, f)
				}
			}
		}
		return err
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	if out == nil {
		out = []api.Host{}
	}
	return out, nil
}

// knownHost reports whether gossip or a report knows the host.
func (s *Server) knownHost(name string) (bool, error) {
	hs, err := s.hostViews()
	for _, h := range hs {
		if h.Name == name {
			return true, err
		}
	}
	return false, err
}

// readHosts answers the access check and returns the host views, or
// writes the error and returns false. Only admins read them: reports carry
// every host's tenants' observed state.
func (s *Server) readHosts(w http.ResponseWriter, r *http.Request) ([]api.Host, bool) {
	if e := requireAdmin(r); e != nil {
		writeError(w, e)
		return nil, false
	}
	hs, err := s.hostViews()
	if err != nil {
		s.errorFor(w, err)
		return nil, false
	}
	return hs, true
}

func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) {
	if hs, ok := s.readHosts(w, r); ok {
		writeJSON(w, http.StatusOK, hs)
	}
}

func (s *Server) getHost(w http.ResponseWriter, r *http.Request) {
	hs, ok := s.readHosts(w, r)
	if !ok {
		return
	}
	for _, h := range hs {
		if h.Name == r.PathValue("host") {
			writeJSON(w, http.StatusOK, h)
			return
		}
	}
	writeError(w, &api.Error{Code: http.StatusNotFound, Message: "host " + r.PathValue("host") + " is not known"})
}

// Converged says whether every live agent has applied epoch.
func Converged(epoch uint64, hosts []api.Host) api.ClusterStatus {
	return ConvergedFor(epoch, hosts, nil)
}

// ConvergedFor says whether every live agent has applied what concerns
// it: need(host) is the latest epoch that changed its plan (nil: epoch).
// A host whose plan no commit since changed is converged at an older one.
func ConvergedFor(epoch uint64, hosts []api.Host, need func(string) uint64) api.ClusterStatus {
	st := api.ClusterStatus{Epoch: epoch, Converged: true, Hosts: []api.HostStatusLine{}}
	for _, h := range hosts {
		want := epoch
		if need != nil {
			want = min(need(h.Name), epoch)
		}
		// A host ahead of the store (same history) applied epochs this
		// store does not hold: the store is an older copy, not converged.
		ahead := h.AppliedEpoch > epoch
		line := api.HostStatusLine{Name: h.Name, State: h.State, AppliedEpoch: h.AppliedEpoch, PlanEpoch: want, Converged: h.AppliedEpoch >= want && !ahead}
		if h.Report != nil {
			for _, ss := range h.Report.Subsystems {
				if !ss.OK {
					line.Errors++
				}
			}
		}
		line.Errors += len(h.Failing)
		st.Failing = append(st.Failing, h.Failing...)
		line.Resources = h.Resources
		live := h.State == api.StateAlive || h.State == api.StateSuspect
		switch {
		case live && ahead:
			line.Reason = fmt.Sprintf("applied epoch %d, ahead of this store's %d: the store is an older copy", h.AppliedEpoch, epoch)
		case live && !line.Converged:
			line.Reason = fmt.Sprintf("applied epoch %d of %d", h.AppliedEpoch, want)
		case live && line.Errors > 0:
			line.Reason = fmt.Sprintf("%d errors", line.Errors)
		case !live && h.Resources > 0:
			// Its resources are not served, whatever epoch it last applied.
			line.Reason = fmt.Sprintf("host is %s with %d resources placed on it", h.State, h.Resources)
		}
		if line.Reason != "" {
			st.Converged = false
			st.Reasons = append(st.Reasons, h.Name+": "+line.Reason)
		}
		st.Hosts = append(st.Hosts, line)
	}
	return st
}

// countPlaced fills each host's count of resources placed on it, and adds
// as unknown the hosts that resources name (spec.host, spec.dhcp_host)
// but neither gossip nor a report knows: a coordinator just restarted
// must not call a fleet converged because it has not heard of its hosts.
func (s *Server) countPlaced(hosts []api.Host, seen map[string]bool, reports map[string]api.HostReport) ([]api.Host, error) {
	err := s.store.View(func(tx *store.Tx) error {
		err := tx.All(func(r api.Resource) error {
			var named struct {
				Host     string `json:"host"`
				DHCPHost string `json:"dhcp_host"`
			}
			_ = json.Unmarshal(r.Spec, &named)
			for _, n := range []string{named.Host, named.DHCPHost} {
				if _, rep := reports[n]; n != "" && !seen[n] && !rep && s.reg.PlacedOn(r, n) {
					seen[n] = true
					hosts = append(hosts, api.Host{Name: n, State: api.StateUnknown})
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.All(func(r api.Resource) error {
			for i := range hosts {
				if s.reg.PlacedOn(r, hosts[i].Name) {
					hosts[i].Resources++
				}
			}
			return nil
		})
	})
	return hosts, err
}

func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request) {
	if e := requireAdmin(r); e != nil {
		writeError(w, e)
		return
	}
	hs, err := s.hostViews()
	if err != nil {
		s.errorFor(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ConvergedFor(s.store.Epoch(), hs, s.need))
}

// hostPlan long-polls: with since equal to the current epoch it waits up to
// wait (capped by MaxWait) for the next commit, then answers with the deltas
// after since, or the full plan when they are no longer retained.
func (s *Server) hostPlan(w http.ResponseWriter, r *http.Request) {
	host := r.PathValue("host")
	if err := requireHost(r, host); err != nil {
		s.errorFor(w, err)
		return
	}
	q := r.URL.Query()
	var since uint64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			s.errorFor(w, api.Fieldf("since", "must be a non-negative integer epoch, not %q", v))
			return
		}
		since = n
	}
	wait := time.Duration(0)
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			s.errorFor(w, api.Fieldf("wait", "must be a duration such as 30s, not %q", v))
			return
		}
		wait = min(d, s.maxWait)
	}
	storage := false
	if v := q.Get("storage"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.errorFor(w, api.Fieldf("storage", "must be true or false, not %q", v))
			return
		}
		storage = b
	}
	if storage && s.scope != nil {
		s.scope.NoteStorage(host)
	}
	if h := q.Get("history"); h != "" && h != s.store.History() {
		// The host's plan is from before a restore: epochs jump past it
		// and it gets the whole restored plan.
		s.restoredHost(w, host, since, storage)
		return
	}
	if since > s.store.Epoch() {
		// Another coordinator over the same etcd may be ahead of this
		// one's view: catch up before calling the store older.
		if err := s.store.Sync(); err != nil {
			s.errorFor(w, err)
			return
		}
	}
	if since > s.store.Epoch() {
		// Same history, yet the host applied epochs this store never
		// reached: this is an older copy of the store, started by mistake.
		// Serving it would undo every change after the copy; refuse.
		s.log.Error("store is older than a host's plan: refusing to serve it; restore it on purpose with `strata-coordinator restore`, or start from the current store",
			"host", host, "host_epoch", since, "store_epoch", s.store.Epoch())
		writeError(w, &api.Error{Code: http.StatusConflict, Field: "since",
			Message: fmt.Sprintf("this coordinator's store is at epoch %d but host %s applied epoch %d of the same history: the store is an older copy; the host keeps its plan", s.store.Epoch(), host, since)})
		return
	}
	if wait > 0 {
		// A commit to other hosts' resources does not wake the host.
		changed, pending := s.changedFor(host, since)
		if !pending {
			t := time.NewTimer(wait)
			select {
			case <-changed:
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
			t.Stop()
		}
	}
	plan, err := s.planOf(host, since, storage)
	if err != nil {
		s.errorFor(w, err)
		return
	}
	s.metrics.plans(plan.Full)
	writeJSON(w, http.StatusOK, plan)
}

// restoredHost answers a host whose plan is from the history before a
// restore: the epoch jumps past the host's (never backwards on a host),
// and the host gets the full restored plan.
func (s *Server) restoredHost(w http.ResponseWriter, host string, since uint64, storage bool) {
	before := s.store.Epoch()
	epoch, err := s.store.JumpEpoch(since + 1)
	if err != nil {
		s.errorFor(w, err)
		return
	}
	if epoch != before {
		s.log.Warn("host is ahead of the restored store: epoch jumped past it", "host", host, "host_epoch", since, "from", before, "to", epoch)
	}
	plan, err := s.planOf(host, 0, storage)
	if err != nil {
		s.errorFor(w, err)
		return
	}
	s.metrics.plans(true)
	writeJSON(w, http.StatusOK, plan)
}

func (s *Server) hostReport(w http.ResponseWriter, r *http.Request) {
	var rep api.HostReport
	host, ok := s.hostRequest(w, r, &rep)
	if !ok {
		return
	}
	if rep.Host != "" && rep.Host != host {
		s.errorFor(w, api.Fieldf("host", "%q does not match the host in the path %q", rep.Host, host))
		return
	}
	rep.Host = host
	rep.Reported = time.Now().UTC()
	if rep.StorageController && s.scope != nil {
		s.scope.NoteStorage(host)
	}
	// A host reports only on what its plan gives it: status written onto
	// any other resource would be a host speaking for another's tenants.
	keep := s.planFilter(host)
	if principal(r).Role == api.RoleAdmin {
		keep = func(api.Resource) bool { return true } // an operator's word
	}
	dropped, err := s.store.PutReport(rep, keep)
	if err != nil {
		s.errorFor(w, err)
		return
	}
	if len(dropped) > 0 {
		s.log.Warn("host reported on resources outside its plan; ignored", "host", host, "resources", dropped)
	}
	s.noteBuildFailures(rep)
	s.noteMigrations(rep)
	w.WriteHeader(http.StatusNoContent)
}

// drainRequest is the body of a drain: why, and whether the host's
// routers and DHCP servers move to other hosts now (after its instances,
// which `stratactl hosts drain --migrate` moves first).
type drainRequest struct {
	Reason      string `json:"reason,omitempty"`
	MoveNetwork bool   `json:"move_network,omitempty"`
}

// setDrain drains (drain=true) or enables a host: a committed change to its
// hostconfig, so it survives coordinator restarts and reaches the agent.
func (s *Server) setDrain(drain bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if e := requireAdmin(r); e != nil {
			writeError(w, e)
			return
		}
		host := r.PathValue("host")
		if fe := api.ValidateName("host", host); fe != nil {
			s.errorFor(w, fe)
			return
		}
		var req drainRequest
		if r.ContentLength > 0 {
			if err := decodeStrict(r, &req, ""); err != nil {
				s.errorFor(w, err)
				return
			}
		}
		spec := api.HostConfigSpec{Drained: drain, Reason: req.Reason}
		if len(spec.Reason) > registry.MaxDescriptionLen {
			s.errorFor(w, api.Fieldf("reason", "is %d characters long, at most %d allowed", len(spec.Reason), registry.MaxDescriptionLen))
			return
		}
		known, err := s.knownHost(host)
		if err != nil {
			s.errorFor(w, err)
			return
		}
		var res api.PutResult
		epoch, changed, err := s.commit.Record(func(tx *store.Tx) error {
			cur, err := tx.Get(api.Key{Kind: "hostconfig", Name: host})
			exists := err == nil
			switch {
			case !exists && !known:
				return &api.Error{Code: http.StatusNotFound, Message: "host " + host + " is not known"}
			case !exists && !drain:
				res.Resource = api.Resource{Kind: "hostconfig", Name: host}
				return nil // never drained: enabling changes nothing
			case exists && drain && spec.Reason == "" && registry.HostConfig(cur).Drained:
				spec.Reason = registry.HostConfig(cur).Reason // drained again: keep why
			}
			buf, _ := json.Marshal(spec)
			res.Resource, _, err = tx.Put(api.Resource{Kind: "hostconfig", Name: host, Spec: buf})
			return err
		})
		if err != nil {
			s.errorFor(w, err)
			return
		}
		res.Changed, res.Epoch = changed, epoch
		if changed {
			s.log.Info("host drain changed", "host", host, "drained", drain, "epoch", epoch, actor(r))
		}
		if drain && req.MoveNetwork {
			// Emptying a drained host: its routers and DHCP servers go to
			// other hosts, with the same addresses.
			var hosts func() []api.Host
			if s.hosts != nil {
				hosts = s.hosts.Hosts
			}
			moved, err := recovery.MoveNetworkOff(s.store, s.reg, hosts, host)
			if err != nil {
				s.errorFor(w, err)
				return
			}
			if len(moved) > 0 {
				res.Changed, res.Epoch = true, s.store.Epoch()
				s.log.Info("routers and DHCP moved off a drained host", "host", host, "moved", moved, actor(r))
			}
		}
		writeJSON(w, http.StatusOK, res)
	}
}

// changedFor returns a channel closed at the next commit that concerns
// host, and whether the host at since has something to apply already.
func (s *Server) changedFor(host string, since uint64) (<-chan struct{}, bool) {
	if s.scope == nil {
		ch := s.store.Changed()
		return ch, since != s.store.Epoch()
	}
	// A host behind the epoch is answered at once, even with empty
	// deltas: only a host parked at the epoch waits for a commit that
	// concerns it.
	ch := s.scope.Changed(host)
	return ch, since != s.scope.Epoch()
}

// planOf is host's plan after since, holding only what concerns it.
func (s *Server) planOf(host string, since uint64, storage bool) (api.Plan, error) {
	if s.scope == nil {
		// Without a scope every host gets every volume and snapshot.
		p, err := s.store.Plan(host, since, s.reg.PlanFilter(host))
		p.Storage = storage
		return p, err
	}
	return s.scope.Plan(host, since, storage)
}

// planFilter says whether a resource is in host's plan now.
func (s *Server) planFilter(host string) store.Filter {
	if s.scope == nil {
		return s.reg.PlanFilter(host)
	}
	return s.scope.Keep(host)
}

// need is the epoch host must have applied to hold its whole plan.
func (s *Server) need(host string) uint64 {
	if s.scope == nil {
		return s.store.Epoch()
	}
	return s.scope.Need(host)
}
