package netspec

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/strata-infra/strata/pkg/api"
)

// These convert the API's specs into the host's desired state. The
// coordinator runs them (and the validation) before it commits, the agent
// when it builds its HostState, so both read the API the same way. Errors
// name the API field.

// ParsePortRange reads "80" or "8000:8080"; "" is nil (any port).
func ParsePortRange(field, s string) (*PortRange, error) {
	if s == "" {
		return nil, nil
	}
	lo, hi, found := strings.Cut(s, ":")
	from, err1 := strconv.Atoi(lo)
	to, err2 := from, error(nil)
	if found {
		to, err2 = strconv.Atoi(hi)
	}
	if err1 != nil || err2 != nil {
		return nil, api.Fieldf(field, "%q is not a port or a range such as 8000:8080", s)
	}
	pr := &PortRange{From: from, To: to}
	if err := pr.Validate(); err != nil {
		return nil, api.Fieldf(field, "%q: %v", s, err)
	}
	return pr, nil
}

// FirewallRuleFromAPI converts and validates one firewall rule.
func FirewallRuleFromAPI(field, id string, r api.FirewallRuleSpec) (FirewallRule, error) {
	sp, err := ParsePortRange(field+".source_ports", r.SourcePorts)
	if err != nil {
		return FirewallRule{}, err
	}
	dp, err := ParsePortRange(field+".destination_ports", r.DestinationPorts)
	if err != nil {
		return FirewallRule{}, err
	}
	fr := FirewallRule{ID: id, Protocol: r.Protocol, Source: r.Source, Dest: r.Destination, SrcPorts: sp, DstPorts: dp, Action: r.Action}
	if err := fr.Validate(); err != nil {
		return fr, api.Fieldf(field, "%v", err)
	}
	return fr, nil
}

// FirewallPolicyFromAPI converts a policy; nil stays nil (allow all).
func FirewallPolicyFromAPI(field, id string, p *api.FirewallPolicySpec) (*FirewallPolicy, error) {
	if p == nil {
		return nil, nil
	}
	out := &FirewallPolicy{ID: id, Existing: p.ApplyToExisting}
	for i, r := range p.Rules {
		fr, err := FirewallRuleFromAPI(fmt.Sprintf("%s.rules[%d]", field, i), fmt.Sprintf("%s-%d", id, i), r)
		if err != nil {
			return nil, err
		}
		out.Rules = append(out.Rules, fr)
	}
	return out, nil
}

// SecurityGroupFromAPI converts a stored group of project; remote groups
// are named within the same project.
func SecurityGroupFromAPI(project, name string, s api.SecurityGroupSpec) (SecurityGroup, error) {
	g := SecurityGroup{ID: GroupID(project, name)}
	for i, r := range s.Rules {
		field := fmt.Sprintf("spec.rules[%d]", i)
		pr, err := ParsePortRange(field+".ports", r.Ports)
		if err != nil {
			return g, err
		}
		rule := SecurityGroupRule{Direction: r.Direction, Protocol: r.Protocol, Ports: pr, RemoteCIDR: r.RemoteCIDR, Ethertype: r.Ethertype}
		if r.RemoteGroup != "" {
			rule.RemoteGroup = GroupID(project, r.RemoteGroup)
		}
		if err := rule.CheckEthertype(); err != nil {
			return g, api.Fieldf(field+".ethertype", "%v", err)
		}
		if err := rule.validate(map[string]bool{rule.RemoteGroup: true}); err != nil {
			return g, api.Fieldf(field, "%v", err)
		}
		g.Rules = append(g.Rules, rule)
	}
	return g, nil
}
