package planmap

import (
	"fmt"
	"sort"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/contract"
	"github.com/strata-infra/strata/pkg/netspec"
)

// The mapping of routers, firewall groups and security groups lives in
// pkg/contract, which the coordinator runs at admission too: what it
// commits is what this host builds.

// Routers builds the routers placed on host.
func Routers(s *plan.Snapshot, host string) ([]netspec.Router, error) {
	return contract.NewIndex(s.Resources).Routers(host)
}

// SecurityGroups lists every group the plan's ports may refer to.
func SecurityGroups(s *plan.Snapshot) ([]netspec.SecurityGroup, error) {
	return contract.NewIndex(s.Resources).SecurityGroups()
}

// without returns the plan's resources but those of kind, plus keep.
func without(h *plan.Host, kind string, keep ...api.Resource) []api.Resource {
	out := make([]api.Resource, 0, len(h.Resources))
	for _, r := range h.Resources {
		if r.Kind != kind {
			out = append(out, r)
		}
	}
	return append(out, keep...)
}

// routers maps the routers placed on host. When the plan's routers do not
// map together, each is mapped alone: one that cannot be is left out and
// named in probs, the others still map.
func routers(h *plan.Host, host string, probs Problems) []netspec.Router {
	if rs, err := contract.NewIndex(h.Resources).Routers(host); err == nil {
		return rs
	}
	var out []netspec.Router
	for _, r := range h.Routers.Items {
		if r.Spec.Host != host {
			continue
		}
		rs, err := contract.NewIndex(without(h, "router", r.Resource)).Routers(host)
		if err != nil {
			probs.add(r.Key(), fmt.Errorf("router %s: %w", r.Key(), err))
			continue
		}
		out = append(out, rs...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// securityGroups lists every group ports may refer to. When they do not
// map together, each is mapped alone: one that cannot be is named in probs
// and replaced by a group with no rules, so its ports are filtered to
// nothing rather than left open (fail closed).
func securityGroups(h *plan.Host, probs Problems) []netspec.SecurityGroup {
	if gs, err := contract.NewIndex(h.Resources).SecurityGroups(); err == nil {
		return gs
	}
	byID := map[string]netspec.SecurityGroup{}
	base, _ := contract.NewIndex(without(h, "securitygroup")).SecurityGroups() // the implicit defaults
	for _, g := range base {
		byID[g.ID] = g
	}
	for _, r := range h.SecurityGroups.Items {
		id := netspec.GroupID(r.Project, r.Name)
		gs, err := contract.NewIndex(without(h, "securitygroup", r.Resource)).SecurityGroups()
		if err != nil {
			probs.add(r.Key(), fmt.Errorf("security group %s: %w", r.Key(), err))
			byID[id] = netspec.SecurityGroup{ID: id}
			continue
		}
		for _, g := range gs {
			if g.ID == id {
				byID[id] = g
			}
		}
	}
	out := make([]netspec.SecurityGroup, 0, len(byID))
	for _, g := range byID {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
