package api

import (
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// resourceHosts is a resource's state on every known host whose plan
// carries it: what the host reported (an error stays until the host
// reports otherwise), else applied or pending by the host's applied
// epoch.
func (s *Server) resourceHosts(tx *store.Tx, res api.Resource, hosts []api.Host) []api.ResourceStatus {
	reported := map[string]api.ResourceStatus{}
	for _, st := range tx.HostStatuses(res.Key()) {
		reported[st.Host] = st
	}
	var out []api.ResourceStatus
	for _, h := range hosts {
		st, ok := reported[h.Name]
		if !s.planFilter(h.Name)(res) && !(ok && st.State == api.ResourceError) {
			continue
		}
		if ok && st.State != api.ResourceApplied {
			out = append(out, st)
			continue
		}
		e := appliedEpoch(h)
		st = api.ResourceStatus{Host: h.Name, State: api.ResourceApplied, Epoch: e}
		if h.Report != nil {
			st.Updated = h.Report.Reported
		}
		if e < res.Epoch {
			st.State = api.ResourcePending
		}
		out = append(out, st)
	}
	return out
}

func appliedEpoch(h api.Host) uint64 {
	if h.Report != nil && h.Report.AppliedEpoch > h.AppliedEpoch {
		return h.Report.AppliedEpoch
	}
	return h.AppliedEpoch
}

// withStatus fills a resource's observed status for a reader.
func (s *Server) withStatus(tx *store.Tx, res api.Resource, hosts []api.Host) api.Resource {
	res.Status = tx.Status(res.Key())
	res.Placement = tx.Placement(res.Key())
	res.Hosts = s.resourceHosts(tx, res, hosts)
	return res
}

// hostsForStatus is the host view resource status is computed against;
// on error, no hosts (the resource itself is still served).
func (s *Server) hostsForStatus() []api.Host {
	hs, err := s.hostViews()
	if err != nil {
		s.log.Warn("host views for resource status", "err", err)
		return nil
	}
	return hs
}
