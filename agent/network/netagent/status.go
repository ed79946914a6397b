package netagent

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/planmap"
	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netspec"
)

// Resource states the network subsystem reports.
const (
	StateError   = "error"   // the host could not apply it; Message says why
	StateApplied = "applied" // applied, after an error was reported
)

// resourceStatus is what the last pass left: the resources that failed on
// this host and why, the ones that failed before and are applied now, and
// the L2 bindings compute may plug taps into.
type resourceStatus struct {
	mu       sync.Mutex
	failing  map[api.Key]failure
	cleared  map[api.Key]uint64 // resource epoch at which it applied again
	nets     map[string]network.L2Binding
	filtered map[string]bool // local ports with security groups
	sgOK     bool            // the group table applied (some ports may be kept closed)
}

type failure struct {
	msg   string
	epoch uint64
}

func newResourceStatus() resourceStatus {
	return resourceStatus{failing: map[api.Key]failure{}, cleared: map[api.Key]uint64{}}
}

// owners maps the IDs drivers use in network.ResourceError (and in
// HostState.Hold) to the plan's resources.
func owners(h *plan.Host) map[string]api.Key {
	o := map[string]api.Key{}
	for _, r := range h.Routers.Items {
		o[network.HoldKey("router", planmap.PortID(r.Project, r.Name))] = r.Key()
	}
	for _, r := range h.SecurityGroups.Items {
		o[network.HoldKey("securitygroup", netspec.GroupID(r.Project, r.Name))] = r.Key()
	}
	for _, r := range h.Ports.Items {
		o[network.HoldKey("port", planmap.PortID(r.Project, r.Name))] = r.Key()
	}
	for _, r := range h.Networks.Items {
		o[network.HoldKey("network", planmap.NetworkID(r.Spec.SegmentationID))] = r.Key()
	}
	return o
}

// resourceEpochs is each plan resource's epoch (the one that last changed it).
func resourceEpochs(h *plan.Host) map[api.Key]uint64 {
	epochs := map[api.Key]uint64{}
	for _, r := range h.Resources {
		epochs[r.Key()] = r.Epoch
	}
	return epochs
}

// pass records the outcome of one pass: fails are the resources failing
// on this host, with why.
func (s *resourceStatus) pass(h *plan.Host, st network.HostState, fails map[api.Key]string, sgOK bool) {
	epochs := resourceEpochs(h)
	nets := map[string]network.L2Binding{}
	for _, n := range st.Networks {
		if n.L2.Bridge != "" {
			nets[n.ID] = n.L2
		}
	}
	filtered := map[string]bool{}
	for _, p := range st.Ports {
		if p.Host == st.Host && len(p.SecurityGroups) > 0 {
			filtered[p.ID] = true
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.failing {
		if _, still := fails[k]; !still {
			if e, in := epochs[k]; in {
				s.cleared[k] = e
			}
		}
	}
	s.failing = map[api.Key]failure{}
	for k, m := range fails {
		s.failing[k] = failure{msg: m, epoch: epochs[k]}
		delete(s.cleared, k)
	}
	for k := range s.cleared {
		if e, in := epochs[k]; !in {
			delete(s.cleared, k)
		} else {
			s.cleared[k] = e
		}
	}
	s.nets, s.filtered, s.sgOK = nets, filtered, sgOK
}

func (s *resourceStatus) binding(networkID, portID string) (network.L2Binding, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.nets[networkID]
	switch {
	case !ok:
		return b, fmt.Errorf("network %q is not set up on this host", networkID)
	case s.filtered[portID] && !s.sgOK:
		return network.L2Binding{}, fmt.Errorf("port %q: its security groups are not in force on this host; not plugged", portID)
	}
	// A port with security groups plugs where its filter matches it: the
	// network's filtered bridge (on an Open vSwitch host, the integration
	// bridge, whose flows filter it).
	return b.ForPort(s.filtered[portID]), nil
}

func (s *resourceStatus) report(rep *api.HostReport) {
	now := time.Now().UTC()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []api.ResourceReport
	for k, f := range s.failing {
		out = append(out, api.ResourceReport{Key: k, ResourceStatus: api.ResourceStatus{Host: rep.Host, State: StateError, Message: f.msg, Epoch: f.epoch, Updated: now}})
	}
	for k, e := range s.cleared {
		out = append(out, api.ResourceReport{Key: k, ResourceStatus: api.ResourceStatus{Host: rep.Host, State: StateApplied, Epoch: e, Updated: now}})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key.String() < out[j].Key.String() })
	rep.Resources = append(rep.Resources, out...)
}
