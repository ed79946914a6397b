package registry

import (
	"fmt"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netspec"
)

// FirewallGroupKind is an FWaaS v2 firewall group on a router's
// interfaces: ordered ingress and egress rules, first match wins.
func FirewallGroupKind() *Kind {
	str := map[string]any{"type": "string"}
	policy := map[string]any{"type": "object", "properties": map[string]any{
		"rules":             map[string]any{"type": "array", "items": map[string]any{"type": "object"}},
		"apply_to_existing": map[string]any{"type": "boolean"},
	}}
	return &Kind{
		Name: "firewallgroup", Plural: "firewallgroups", Scope: Project, Order: 60,
		NewSpec: func() any { return &api.FirewallGroupSpec{} },
		Admit:   admitFirewallGroup,
		Schema: map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"router"},
			"properties": map[string]any{
				"router": str, "interfaces": map[string]any{"type": "array", "items": str},
				"ingress": policy, "egress": policy,
			},
		},
	}
}

func admitFirewallGroup(a *Admission, r *api.Resource, spec any) error {
	s := spec.(*api.FirewallGroupSpec)
	rt, err := a.Tx.Get(api.Key{Kind: "router", Project: r.Project, Name: s.Router})
	if err != nil {
		return api.Fieldf("spec.router", "router %q does not exist in project %q", s.Router, r.Project)
	}
	attached := map[string]bool{}
	for _, in := range decode[api.RouterSpec](rt).Interfaces {
		attached[in.Subnet] = true
	}
	for i, sub := range s.Interfaces {
		if !attached[sub] {
			return api.Fieldf(fmt.Sprintf("spec.interfaces[%d]", i), "subnet %q is not an interface of router %q", sub, s.Router)
		}
	}
	if _, err := netspec.FirewallPolicyFromAPI("spec.ingress", "in", s.Ingress); err != nil {
		return err
	}
	if _, err := netspec.FirewallPolicyFromAPI("spec.egress", "out", s.Egress); err != nil {
		return err
	}
	others, err := a.Tx.List("firewallgroup", r.Project, false)
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.Name != r.Name && decode[api.FirewallGroupSpec](o).Router == s.Router {
			return Conflictf("router %q already has firewall group %q", s.Router, o.Name)
		}
	}
	return nil
}
