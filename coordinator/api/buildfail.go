package api

import (
	"encoding/json"
	"errors"
	"slices"

	"github.com/strata-infra/strata/coordinator/commit"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// buildFailed reports whether a host's status of an instance says its
// build failed there: the host's libvirt answers, the instance has no
// domain, and the host names an error at the instance's current epoch.
// A libvirtd outage or a guest stopped inside is none of these.
func buildFailed(rep api.HostReport, rr api.ResourceReport) bool {
	return rr.Key.Kind == "instance" && rep.Compute != nil && rep.Compute.Connected &&
		rr.State == "missing" && rr.Message != ""
}

// noteBuildFailures acts on the instances a host reports it could not
// build: the scheduler's failure weigher counts the host down, and the
// instance moves to another host in a commit of the coordinator's own
// (nova's reschedule, at most api.MaxBuildAttempts hosts). Each failure
// is acted on once: the commit adds the host to the instance's
// BuildFailures, and a report about an older epoch, or from a host the
// instance has left, changes nothing.
func (s *Server) noteBuildFailures(rep api.HostReport) {
	for _, rr := range rep.Resources {
		if !buildFailed(rep, rr) {
			continue
		}
		moved, err := s.rebuild(rep.Host, rr)
		if err != nil {
			s.log.Warn("move an instance whose build failed", "instance", rr.Key.String(), "host", rep.Host, "err", err)
			continue
		}
		if moved {
			s.reg.Scheduler.BuildFailed(rep.Host)
			s.log.Warn("instance build failed on host; rescheduled", "instance", rr.Key.String(), "host", rep.Host, "error", rr.Message)
		}
	}
}

// rebuild commits the host's build failure into the instance's spec
// through the commit service; the instance kind's admission then places
// it elsewhere. It reports whether the failure was new.
func (s *Server) rebuild(host string, rr api.ResourceReport) (bool, error) {
	fresh := false
	_, err := s.commit.Put(commit.Put{Key: rr.Key, Who: commit.Who{System: true},
		Edit: func(prev *api.Resource) (any, error) {
			fresh = false
			if prev == nil {
				return nil, nil
			}
			var spec api.InstanceSpec
			if err := json.Unmarshal(prev.Spec, &spec); err != nil {
				return nil, err
			}
			if spec.Host != host || rr.Epoch < prev.Epoch || slices.Contains(spec.BuildFailures, host) {
				return nil, nil // stale, moved already, or counted already
			}
			fresh = true
			spec.BuildFailures = append(slices.Clone(spec.BuildFailures), host)
			return &spec, nil
		}})
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return fresh && err == nil, err
}
