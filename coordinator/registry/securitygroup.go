package registry

import (
	"fmt"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netspec"
)

// DefaultSecurityGroup is the group of ports that name none.
const DefaultSecurityGroup = "default"

// SecurityGroupKind is a set of stateful allow rules for the ports in it.
func SecurityGroupKind() *Kind {
	return &Kind{
		Name: "securitygroup", Plural: "securitygroups", Scope: Project, Order: 25,
		NewSpec:      func() any { return &api.SecurityGroupSpec{} },
		Admit:        admitSecurityGroup,
		BeforeDelete: deleteSecurityGroup,
		Schema: map[string]any{
			"type": "object", "additionalProperties": false,
			"properties": map[string]any{"rules": map[string]any{"type": "array", "items": map[string]any{"type": "object"}}},
		},
	}
}

func admitSecurityGroup(a *Admission, r *api.Resource, spec any) error {
	s := spec.(*api.SecurityGroupSpec)
	if _, err := netspec.SecurityGroupFromAPI(r.Project, r.Name, *s); err != nil {
		return err
	}
	for i, rule := range s.Rules {
		if g := rule.RemoteGroup; g != "" && g != r.Name && g != DefaultSecurityGroup {
			if _, err := a.Tx.Get(api.Key{Kind: "securitygroup", Project: r.Project, Name: g}); err != nil {
				return api.Fieldf(fmt.Sprintf("spec.rules[%d].remote_group", i), "security group %q does not exist in project %q", g, r.Project)
			}
		}
	}
	return nil
}

func deleteSecurityGroup(a *Admission, r api.Resource) error {
	ports, err := a.Tx.List("port", r.Project, false)
	if err != nil {
		return err
	}
	for _, p := range ports {
		for _, g := range decode[api.PortSpec](p).SecurityGroups {
			if g == r.Name {
				return Conflictf("security group %q is still used by port %q", r.Name, p.Name)
			}
		}
	}
	groups, err := a.Tx.List("securitygroup", r.Project, false)
	if err != nil {
		return err
	}
	for _, g := range groups {
		for _, rule := range decode[api.SecurityGroupSpec](g).Rules {
			if g.Name != r.Name && rule.RemoteGroup == r.Name {
				return Conflictf("security group %q is the remote group of a rule of %q", r.Name, g.Name)
			}
		}
	}
	return nil
}
