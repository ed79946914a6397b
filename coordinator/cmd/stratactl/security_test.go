package main

import (
	"strings"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

func TestSecurityGroups(t *testing.T) {
	c := newCLI(t)
	c.steps([]step{
		{args: "securitygroups create -p p web --rule direction=ingress,protocol=tcp,ports=22,remote_cidr=0.0.0.0/0"},
		{args: "securitygroups create -p p bad --rule dir=ingress", err: `unknown key "dir"`},
		{args: "securitygroups create -p p bad --rule direction=ingress,protocol=tcp,ports=0", field: "spec.rules[0].ports"},
		{args: "sg add-rule -p p web --rule direction=ingress,protocol=tcp,ports=8000:8080 --rule direction=egress", want: []string{"web", "updated"}},
		// A rule the group has already is not added twice.
		{args: "sg add-rule -p p web --rule direction=ingress,protocol=tcp,ports=8000:8080", want: []string{"web", "unchanged"}},
		{args: "sg add-rule -p p web", err: "--rule is required"},
		{args: "sg add-rule -p p web --rule direction=ingress,remote_group=nope", field: "spec.rules[3].remote_group"},
		{args: "securitygroups show -p p web", want: []string{"name:", "p/web", "rules:",
			"INDEX", "DIRECTION", "PROTOCOL", "PORTS", "REMOTE",
			"0", "ingress", "tcp", "22", "0.0.0.0/0",
			"1", "ingress", "tcp", "8000:8080", "any",
			"2", "egress", "any", "any", "any"}},
		{args: "securitygroups list -p p", want: []string{"RULES", "web", "direction=ingress,protocol=tcp,ports=22,remote_cidr=0.0.0.0/0; "}},
		{args: "securitygroups remove-rule -p p web 0", want: []string{"web", "updated"}},
		{args: "securitygroups remove-rule -p p web 2", err: "want 0..1"},
		{args: "securitygroups remove-rule -p p web x", err: "want 0..1"},
	})
	var r api.Resource
	c.json(&r, "securitygroups", "show", "-p", "p", "web")
	want := []api.SecurityGroupRuleSpec{{Direction: "ingress", Protocol: "tcp", Ports: "8000:8080"}, {Direction: "egress"}}
	if s := spec[api.SecurityGroupSpec](t, r); len(s.Rules) != 2 || s.Rules[0] != want[0] || s.Rules[1] != want[1] {
		t.Fatalf("rules after remove-rule: %s", r.Spec)
	}
	c.steps([]step{
		{args: "networks create -p p app"},
		{args: "ports create -p p vm --network app --security-group web"},
		{args: "securitygroups delete -p p web", err: "still used by port"},
		{args: "ports delete -p p vm"},
		{args: "securitygroups delete -p p web"},
	})
}

func TestFirewallGroupsKeepRuleOrder(t *testing.T) {
	c := routedCLI(t)
	c.steps([]step{
		{args: "routers create -p p r1 --external-network ext --subnet s1 --subnet s2"},
		{args: "firewallgroups create -p p fw --router r1 --ingress-rule protocol=tcp,destination_port=22,action=allow", err: `unknown key "destination_port"`},
		{args: "firewallgroups create -p p fw --router r1 --ingress-rule protocol=tcp,destination_ports=0,action=allow", field: "spec.ingress.rules[0].destination_ports"},
		{args: "firewallgroups create -p p fw --router r1 --interface s3", field: "spec.interfaces[0]"},
		{args: "firewallgroups create -p p fw --router r1 --interface s1 --apply-to-existing" +
			" --ingress-rule protocol=tcp,destination_ports=22,action=allow" +
			" --ingress-rule protocol=tcp,source=10.2.0.0/24,destination_ports=8000:8080,action=reject" +
			" --ingress-rule protocol=icmp,action=allow" +
			" --ingress-rule action=deny" +
			" --egress-rule protocol=udp,destination=192.0.2.0/24,destination_ports=53,action=allow"},
		{args: "fwg list -p p", want: []string{"ROUTER", "INTERFACES", "INGRESS_RULES", "EGRESS_RULES", "fw", "r1", "s1", "4", "1"}},
		{args: "firewallgroup show -p p fw", want: []string{"router:", "r1", "interfaces:", "s1",
			"ingress (first match wins, then deny; applies to existing connections)",
			"0", "tcp", "any", "any", "any", "22", "allow",
			"1", "tcp", "10.2.0.0/24", "any", "any", "8000:8080", "reject",
			"2", "icmp", "allow",
			"3", "any", "any", "any", "any", "any", "deny",
			"egress", "0", "udp", "any", "any", "192.0.2.0/24", "53", "allow"}},
		{args: "routers delete -p p r1", err: "firewall group"},
	})
	var r api.Resource
	c.json(&r, "firewallgroups", "show", "-p", "p", "fw")
	s := spec[api.FirewallGroupSpec](t, r)
	var actions []string
	for _, rule := range s.Ingress.Rules {
		actions = append(actions, rule.DestinationPorts+"/"+rule.Action)
	}
	if got := strings.Join(actions, " "); got != "22/allow 8000:8080/reject /allow /deny" || !s.Ingress.ApplyToExisting || len(s.Egress.Rules) != 1 {
		t.Fatalf("firewall group %s", r.Spec)
	}
	c.steps([]step{
		{args: "firewallgroups create -p p open --router r1 --interface s2", err: "already has firewall group"},
		{args: "firewallgroups delete -p p fw"},
		{args: "firewallgroups create -p p open --router r1"},
		{args: "fwg show -p p open", want: []string{"interfaces:", "all", "ingress: no policy", "egress: no policy"}},
	})
}
