package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/coordinator/ctl"
	"github.com/strata-infra/strata/pkg/api"
)

// Rule indexes are 0-based, as in the API's field names (spec.rules[0]).

const sgRuleHelp = `rule: comma-separated key=value with keys direction (ingress|egress), protocol (tcp|udp|icmp|...), ports ("22" or "8000:8080"), remote_cidr (IPv4 or IPv6), remote_group, ethertype (IPv4|IPv6: one family only; default the remote_cidr's, or both); repeatable`

const fwRuleHelp = `rule: comma-separated key=value with keys protocol, source, destination (CIDRs), source_ports, destination_ports ("22" or "8000:8080"), action (allow|deny|reject); repeatable, in order`

func securityGroupsCmd(g *globals) *cobra.Command {
	cmd, k := newKindCmd(g, "securitygroups", []string{"securitygroup", "sg", "sgs"}, "Stateful allow rules for a project's ports", true)
	var ruleArgs []string
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a security group", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rules, err := ctl.ParseEach(ruleArgs, ctl.ParseSecurityGroupRule)
			if err != nil {
				return err
			}
			return k.create(cmd, args[0], api.SecurityGroupSpec{Rules: append([]api.SecurityGroupRuleSpec{}, rules...)})
		},
	}
	create.Flags().StringArrayVar(&ruleArgs, "rule", nil, sgRuleHelp)
	var addArgs []string
	add := modifyCmd(k, "add-rule NAME --rule RULE...", "Add rules to a security group (a rule it has already is kept once)", cobra.ExactArgs(1),
		func(s *api.SecurityGroupSpec, _ []string) error {
			if len(addArgs) == 0 {
				return errors.New("--rule is required")
			}
			rules, err := ctl.ParseEach(addArgs, ctl.ParseSecurityGroupRule)
			if err != nil {
				return err
			}
			for _, r := range rules {
				if !slices.Contains(s.Rules, r) {
					s.Rules = append(s.Rules, r)
				}
			}
			return nil
		})
	add.Flags().StringArrayVar(&addArgs, "rule", nil, sgRuleHelp)
	remove := modifyCmd(k, "remove-rule NAME INDEX", "Remove a security group's rule by its index in show (from 0)", cobra.ExactArgs(2),
		func(s *api.SecurityGroupSpec, args []string) error {
			i, err := ruleIndex(args[0], len(s.Rules))
			if err != nil {
				return err
			}
			s.Rules = slices.Delete(s.Rules, i, i+1)
			return nil
		})
	list := listCmd(k, []string{"RULES"}, func(_ api.Resource, s api.SecurityGroupSpec) []string {
		var out []string
		for _, r := range s.Rules {
			out = append(out, sgRule(r))
		}
		return []string{or(strings.Join(out, "; "), "-")}
	})
	show := showCmd(k, func(s api.SecurityGroupSpec) fields { return nil }, func(w io.Writer, s api.SecurityGroupSpec) {
		t := ctl.Table{Header: []string{"INDEX", "DIRECTION", "PROTOCOL", "PORTS", "REMOTE"}}
		for i, r := range s.Rules {
			t.Rows = append(t.Rows, []string{fmt.Sprint(i), r.Direction, or(r.Protocol, "any"), or(r.Ports, "any"), remote(r)})
		}
		table(w, "rules", t)
	})
	cmd.AddCommand(create, add, remove, list, show, k.deleteCmd())
	return cmd
}

func ruleIndex(arg string, n int) (int, error) {
	i, err := strconv.Atoi(arg)
	if err != nil || i < 0 || i >= n {
		if n == 0 {
			return 0, fmt.Errorf("rule index %q: there are no rules", arg)
		}
		return 0, fmt.Errorf("rule index %q: want 0..%d, as show numbers them", arg, n-1)
	}
	return i, nil
}

func remote(r api.SecurityGroupRuleSpec) string {
	switch {
	case r.RemoteGroup != "":
		return "group " + r.RemoteGroup
	case r.RemoteCIDR != "":
		return r.RemoteCIDR
	}
	return "any"
}

// sgRule renders a rule in the --rule syntax.
func sgRule(r api.SecurityGroupRuleSpec) string {
	return kvString([][2]string{{"direction", r.Direction}, {"protocol", r.Protocol}, {"ports", r.Ports},
		{"remote_cidr", r.RemoteCIDR}, {"remote_group", r.RemoteGroup}, {"ethertype", r.Ethertype}})
}

func kvString(kvs [][2]string) string {
	var out []string
	for _, kv := range kvs {
		if kv[1] != "" {
			out = append(out, kv[0]+"="+kv[1])
		}
	}
	return strings.Join(out, ",")
}

func firewallGroupsCmd(g *globals) *cobra.Command {
	cmd, k := newKindCmd(g, "firewallgroups", []string{"firewallgroup", "fwg", "fwgs"}, "Ordered firewall rules on a router's interfaces (FWaaS v2)", true)
	var s api.FirewallGroupSpec
	var ingressArgs, egressArgs []string
	var existing bool
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a firewall group on a router", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			policy := func(vals []string) (*api.FirewallPolicySpec, error) {
				if len(vals) == 0 {
					return nil, nil
				}
				rules, err := ctl.ParseEach(vals, ctl.ParseFirewallRule)
				return &api.FirewallPolicySpec{Rules: rules, ApplyToExisting: existing}, err
			}
			var err error
			if s.Ingress, err = policy(ingressArgs); err != nil {
				return err
			}
			if s.Egress, err = policy(egressArgs); err != nil {
				return err
			}
			if existing && s.Ingress == nil && s.Egress == nil {
				return errors.New("--apply-to-existing needs an --ingress-rule or an --egress-rule")
			}
			return k.create(cmd, args[0], s)
		},
	}
	f := create.Flags()
	f.StringVar(&s.Router, "router", "", "router whose interfaces the group filters")
	f.StringSliceVar(&s.Interfaces, "interface", nil, "subnet of a router interface to cover (repeatable; default: all)")
	f.StringArrayVar(&ingressArgs, "ingress-rule", nil, "ingress (into the subnets) "+fwRuleHelp+"; none: no ingress policy")
	f.StringArrayVar(&egressArgs, "egress-rule", nil, "egress (out of the subnets) "+fwRuleHelp+"; none: no egress policy")
	f.BoolVar(&existing, "apply-to-existing", false, "changes also cut established connections")
	nrules := func(p *api.FirewallPolicySpec) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprint(len(p.Rules))
	}
	list := listCmd(k, []string{"ROUTER", "INTERFACES", "INGRESS_RULES", "EGRESS_RULES"}, func(_ api.Resource, s api.FirewallGroupSpec) []string {
		return []string{s.Router, or(strings.Join(s.Interfaces, ","), "all"), nrules(s.Ingress), nrules(s.Egress)}
	})
	show := showCmd(k, func(s api.FirewallGroupSpec) fields {
		return fields{{"router", s.Router}, {"interfaces", or(strings.Join(s.Interfaces, ","), "all")}}
	}, func(w io.Writer, s api.FirewallGroupSpec) {
		policy(w, "ingress", s.Ingress)
		policy(w, "egress", s.Egress)
	})
	cmd.AddCommand(create, list, show, k.deleteCmd())
	return cmd
}

// policy prints a firewall policy's rules in the order they are matched.
func policy(w io.Writer, dir string, p *api.FirewallPolicySpec) {
	if p == nil {
		fmt.Fprintf(w, "%s: no policy (everything passes)\n", dir)
		return
	}
	title := dir + " (first match wins, then deny"
	if p.ApplyToExisting {
		title += "; applies to existing connections"
	}
	t := ctl.Table{Header: []string{"INDEX", "PROTOCOL", "SOURCE", "SOURCE_PORTS", "DESTINATION", "DESTINATION_PORTS", "ACTION"}}
	for i, r := range p.Rules {
		t.Rows = append(t.Rows, []string{fmt.Sprint(i), or(r.Protocol, "any"), or(r.Source, "any"), or(r.SourcePorts, "any"),
			or(r.Destination, "any"), or(r.DestinationPorts, "any"), r.Action})
	}
	table(w, title+")", t)
}
