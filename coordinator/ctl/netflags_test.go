package ctl

import (
	"strings"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

func TestParseSecurityGroupRule(t *testing.T) {
	for _, c := range []struct {
		in   string
		want api.SecurityGroupRuleSpec
		err  string
	}{
		{in: "direction=ingress,protocol=tcp,ports=22,remote_cidr=0.0.0.0/0",
			want: api.SecurityGroupRuleSpec{Direction: "ingress", Protocol: "tcp", Ports: "22", RemoteCIDR: "0.0.0.0/0"}},
		{in: " direction = egress , ports=8000:8080, remote-group=web ,",
			want: api.SecurityGroupRuleSpec{Direction: "egress", Ports: "8000:8080", RemoteGroup: "web"}},
		{in: "Direction=ingress", want: api.SecurityGroupRuleSpec{Direction: "ingress"}},
		{in: "direction=ingress,port=22", err: `unknown key "port"; want one of direction, protocol, ports, remote_cidr, remote_group, ethertype`},
		{in: "direction=ingress,tcp", err: `"tcp" is not key=value`},
		{in: "direction=ingress,direction=egress", err: `key "direction" is given twice`},
		{in: " ", err: "empty"},
	} {
		got, err := ParseSecurityGroupRule(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: err %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %+v %v, want %+v", c.in, got, err, c.want)
		}
	}
}

func TestParseFirewallRule(t *testing.T) {
	got, err := ParseFirewallRule("protocol=tcp,source=10.0.0.0/8,source_ports=1024:65535,destination=192.0.2.0/24,destination_ports=22,action=allow")
	want := api.FirewallRuleSpec{Protocol: "tcp", Source: "10.0.0.0/8", SourcePorts: "1024:65535",
		Destination: "192.0.2.0/24", DestinationPorts: "22", Action: "allow"}
	if err != nil || got != want {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := ParseFirewallRule("direction=ingress,action=allow"); err == nil || !strings.Contains(err.Error(), `unknown key "direction"`) {
		t.Fatalf("firewall rules have no direction: %v", err)
	}
}

func TestParsePoolRouteFixedIP(t *testing.T) {
	for _, c := range []struct {
		in, kind string
		want     any
		err      string
	}{
		{in: "10.0.0.10-10.0.0.20", kind: "pool", want: api.IPRange{Start: "10.0.0.10", End: "10.0.0.20"}},
		{in: "2001:db8::10-2001:db8::20", kind: "pool", want: api.IPRange{Start: "2001:db8::10", End: "2001:db8::20"}},
		{in: "10.0.0.10", kind: "pool", err: "want START-END"},
		{in: "10.0.0.10-", kind: "pool", err: "want START-END"},
		{in: "10.9.0.0/16=10.0.0.254", kind: "route", want: api.HostRoute{Destination: "10.9.0.0/16", NextHop: "10.0.0.254"}},
		{in: "10.9.0.0/16", kind: "route", err: "want DESTINATION=NEXTHOP"},
		{in: "10.0.0.5", kind: "ip", want: api.FixedIP{IP: "10.0.0.5"}},
		{in: "s1=10.0.0.5", kind: "ip", want: api.FixedIP{Subnet: "s1", IP: "10.0.0.5"}},
		{in: "s1=", kind: "ip", want: api.FixedIP{Subnet: "s1"}},
		{in: "=10.0.0.5", kind: "ip", err: "want IP, SUBNET=IP or SUBNET="},
		{in: "", kind: "ip", err: "empty"},
	} {
		var got any
		var err error
		switch c.kind {
		case "pool":
			got, err = ParsePool(c.in)
		case "route":
			got, err = ParseRoute(c.in)
		case "ip":
			got, err = ParseFixedIP(c.in)
		}
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s %q: err %v, want %q", c.kind, c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s %q: %+v %v, want %+v", c.kind, c.in, got, err, c.want)
		}
	}
	if _, err := ParseEach([]string{"1.1.1.1-1.1.1.2", "bad"}, ParsePool); err == nil || !strings.Contains(err.Error(), `"bad"`) {
		t.Fatalf("ParseEach: %v", err)
	}
}
