package api

import (
	"fmt"
	"time"

	"github.com/strata-infra/strata/coordinator/registry"
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
	if f := volumeFlush(res, hosts); f != nil {
		if res.Status != nil {
			f.Detail = res.Status.Detail // the image as the controller saw it
		}
		res.Status = f
		res.Hosts = append(res.Hosts, *f)
	}
	return res
}

// volumeFlush is the flush of a krbd volume's cache that the host mapping
// it reports (before it lets the image go: the volume detached, its
// instance deleted or moved), or that flush's failure. While a host has it
// it is the volume's status, so "volumes show" and --wait see how far it
// got, and the storage controller's status (which waits on the image's
// lock) comes back once the host has let the image go. The host no
// longer has the volume in its plan by then, so the flush comes from its
// report of the caches it holds, not from a status of its own.
func volumeFlush(res api.Resource, hosts []api.Host) *api.ResourceStatus {
	if res.Kind != "volume" {
		return nil
	}
	var reps []api.HostReport
	reported := map[string]time.Time{}
	for _, h := range hosts {
		if h.Report != nil {
			rep := *h.Report
			rep.Host = h.Name
			reps = append(reps, rep)
			reported[h.Name] = h.Report.Reported
		}
	}
	host, f := registry.VolumeFlush(reps, res.Project, res.Name)
	if f == nil {
		return nil
	}
	st := &api.ResourceStatus{Host: host, State: api.ResourcePending, Epoch: res.Epoch, Updated: reported[host],
		Message: fmt.Sprintf("host %s %s", host, f.Message)}
	if f.Error != "" {
		st.State = api.ResourceError
		st.Message = fmt.Sprintf("host %s: %s", host, f.Error)
	}
	return st
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
