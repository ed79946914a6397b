package netspec

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

func goodRouter(id string) Router {
	return Router{
		ID:   id,
		SNAT: true,
		Gateway: &Gateway{Bridge: "br-ex", Addr: netip.MustParsePrefix("203.0.113.10/24"),
			NextHop: netip.MustParseAddr("203.0.113.1")},
		Interfaces:  []Interface{{ID: "if-a", NetworkID: "net-a", Addr: netip.MustParsePrefix("10.1.1.1/24")}},
		FloatingIPs: []FloatingIP{{IP: netip.MustParseAddr("203.0.113.50"), FixedIP: netip.MustParseAddr("10.1.1.10")}},
		Firewall: &FirewallGroup{ID: "fw", Ports: []string{"if-a"}, Ingress: &FirewallPolicy{ID: "in", Rules: []FirewallRule{
			{ID: "r1", Protocol: ProtoTCP, Source: "198.51.100.0/24", DstPorts: &PortRange{From: 22, To: 22}, Action: ActionAllow},
		}}},
	}
}

// TestValidateRouters: each bad input is refused with an error naming the
// router and the field; the good router passes.
func TestValidateRouters(t *testing.T) {
	rule := func(f func(*FirewallRule)) func(*Router) {
		return func(r *Router) { f(&r.Firewall.Ingress.Rules[0]) }
	}
	tests := []struct {
		name   string
		change func(*Router)
		want   string // substring of the error; "" means valid
	}{
		{"good", func(*Router) {}, ""},
		{"overlapping interfaces", func(r *Router) {
			r.Interfaces = append(r.Interfaces, Interface{ID: "if-b", NetworkID: "net-b", Addr: netip.MustParsePrefix("10.1.0.1/16")})
		}, `router "r1" interface "if-b": cidr 10.1.0.0/16 overlaps interface "if-a" (10.1.1.0/24)`},
		{"interface on network address", func(r *Router) { r.Interfaces[0].Addr = netip.MustParsePrefix("10.1.1.0/24") }, `interface "if-a" addr: 10.1.1.0 is the network`},
		{"invalid source cidr", rule(func(fr *FirewallRule) { fr.Source = "10.0.0.300/8" }), `ingress policy "in" rule 0 ("r1"): source: invalid cidr "10.0.0.300/8"`},
		{"host bits in cidr", rule(func(fr *FirewallRule) { fr.Dest = "10.1.1.5/24" }), `destination: invalid cidr "10.1.1.5/24": host bits set`},
		{"port 0", rule(func(fr *FirewallRule) { fr.DstPorts = &PortRange{From: 0, To: 80} }), "port range 0-80: want 1 <= from"},
		{"port above 65535", rule(func(fr *FirewallRule) { fr.DstPorts = &PortRange{From: 1000, To: 70000} }), "port range 1000-70000"},
		{"ports without tcp/udp", rule(func(fr *FirewallRule) { fr.Protocol = ProtoICMP }), `needs protocol tcp or udp, not "icmp"`},
		{"bad action", rule(func(fr *FirewallRule) { fr.Action = "permit" }), `action "permit"`},
		{"firewall on unknown port", func(r *Router) { r.Firewall.Ports = []string{"nope"} }, `port "nope": not an interface`},
		{"floating ip twice", func(r *Router) {
			r.FloatingIPs = append(r.FloatingIPs, FloatingIP{IP: netip.MustParseAddr("203.0.113.50"), FixedIP: netip.MustParseAddr("10.1.1.11")})
		}, "floating ip 203.0.113.50: already taken"},
		{"floating ip outside external subnet", func(r *Router) { r.FloatingIPs[0].IP = netip.MustParseAddr("192.0.2.9") }, "not a free address of the external subnet"},
		{"fixed ip behind no interface", func(r *Router) { r.FloatingIPs[0].FixedIP = netip.MustParseAddr("10.9.9.9") }, "is on none of the router's interfaces"},
		{"snat without gateway", func(r *Router) { r.Gateway = nil }, "need a gateway"},
		{"long bridge name", func(r *Router) { r.Gateway.Bridge = "a-very-long-bridge" }, "gateway bridge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := goodRouter("r1")
			tt.change(&r)
			err := ValidateRouters([]Router{r})
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("accepted, want error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

// TestFloatingIPTakenAcrossRouters: the same floating IP on two routers is
// refused, naming the router that holds it.
func TestFloatingIPTakenAcrossRouters(t *testing.T) {
	a, b := goodRouter("ra"), goodRouter("rb")
	err := ValidateRouters([]Router{a, b})
	if err == nil || !strings.Contains(err.Error(), `router "rb" floating ip 203.0.113.50: already taken by router "ra"`) {
		t.Fatalf("got %v", err)
	}
}

func TestValidateSecurityGroups(t *testing.T) {
	ok := []SecurityGroup{DefaultSecurityGroup("default"), {ID: "web", Rules: []SecurityGroupRule{
		{Direction: Ingress, Protocol: ProtoTCP, Ports: &PortRange{From: 80, To: 80}, RemoteCIDR: "0.0.0.0/0"},
	}}}
	if err := ValidateSecurityGroups(ok); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		rule SecurityGroupRule
		want string
	}{
		{SecurityGroupRule{Direction: "in"}, `direction "in"`},
		{SecurityGroupRule{Direction: Ingress, RemoteGroup: "ghost"}, `remote group "ghost": no such group`},
		{SecurityGroupRule{Direction: Ingress, RemoteCIDR: "10.0.0.0/33"}, `remote cidr: invalid cidr "10.0.0.0/33"`},
		{SecurityGroupRule{Direction: Ingress, Protocol: ProtoUDP, Ports: &PortRange{From: 65535, To: 65536}}, "port range 65535-65536"},
		{SecurityGroupRule{Direction: Ingress, RemoteCIDR: "10.0.0.0/8", RemoteGroup: "default"}, "remote cidr and remote group are both set"},
		{SecurityGroupRule{Direction: Ingress, RemoteCIDR: "fd00::/64", Ethertype: EtherIPv4}, `ethertype "IPv4" does not match remote cidr "fd00::/64", an IPv6 prefix`},
		{SecurityGroupRule{Direction: Egress, RemoteCIDR: "10.0.0.0/8", Ethertype: EtherIPv6}, `ethertype "IPv6" does not match remote cidr "10.0.0.0/8", an IPv4 prefix`},
		{SecurityGroupRule{Direction: Ingress, Ethertype: "ipv6"}, `ethertype "ipv6": want IPv4, IPv6 or empty`},
		{SecurityGroupRule{Direction: Ingress, RemoteCIDR: "fd00::1/64"}, `remote cidr: invalid cidr "fd00::1/64": host bits set (did you mean fd00::/64?)`},
		{SecurityGroupRule{Direction: Ingress, RemoteCIDR: "::ffff:10.0.0.0/104"}, `remote cidr: invalid cidr "::ffff:10.0.0.0/104": an IPv4-mapped`},
	}
	for _, tt := range bad {
		err := ValidateSecurityGroups([]SecurityGroup{{ID: "g", Rules: []SecurityGroupRule{tt.rule}}, DefaultSecurityGroup("default")})
		if err == nil || !strings.Contains(err.Error(), `security group "g" rule 0: `+tt.want) {
			t.Errorf("rule %+v: got %v, want %q", tt.rule, err, tt.want)
		}
	}
}

// TestRuleFamilies: a rule's ethertype, else its remote CIDR, says which
// families it applies to; neither means both.
func TestRuleFamilies(t *testing.T) {
	for _, c := range []struct {
		r      SecurityGroupRule
		v4, v6 bool
	}{
		{SecurityGroupRule{Direction: Ingress}, true, true},
		{SecurityGroupRule{Direction: Ingress, RemoteGroup: "g"}, true, true},
		{SecurityGroupRule{Direction: Ingress, RemoteCIDR: "0.0.0.0/0"}, true, false},
		{SecurityGroupRule{Direction: Ingress, RemoteCIDR: "::/0"}, false, true},
		{SecurityGroupRule{Direction: Ingress, RemoteCIDR: "fd00::/8", Ethertype: EtherIPv6}, false, true},
		{SecurityGroupRule{Direction: Ingress, Ethertype: EtherIPv4}, true, false},
		{SecurityGroupRule{Direction: Ingress, Ethertype: EtherIPv6, RemoteGroup: "g"}, false, true},
	} {
		if v4, v6 := c.r.Families(); v4 != c.v4 || v6 != c.v6 {
			t.Errorf("%+v: families v4=%v v6=%v, want %v %v", c.r, v4, v6, c.v4, c.v6)
		}
	}
	ok := []SecurityGroup{{ID: "g", Rules: []SecurityGroupRule{{Direction: Ingress, RemoteCIDR: "fd00:6::/64"}, {Direction: Egress, RemoteCIDR: "::/0", Ethertype: EtherIPv6}}}}
	if err := ValidateSecurityGroups(ok); err != nil {
		t.Fatal(err)
	}
}

// The API accepts project and resource names of up to 63 characters; the
// IDs hosts derive from them must pass the hosts' checks at any length.
func TestLongNamesMakeValidIDs(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, c := range [][2]string{{"demo", strings.Repeat("s", 60)}, {long, long}, {"p", "default"}} {
		id := GroupID(c[0], c[1])
		if !ValidID(id) || len(id) > MaxIDLen {
			t.Errorf("GroupID(%d chars, %d chars) = %q: not a valid host ID", len(c[0]), len(c[1]), id)
		}
		g, err := SecurityGroupFromAPI(c[0], c[1], api.SecurityGroupSpec{Rules: []api.SecurityGroupRuleSpec{{Direction: "ingress", RemoteGroup: c[1]}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := ValidateSecurityGroups([]SecurityGroup{g}); err != nil {
			t.Errorf("group %q: %v", c[1], err)
		}
	}
	if ResourceID("a", "b") != "a.b" || ResourceID(long, "x") == ResourceID(long, "y") {
		t.Fatal("ResourceID must keep short IDs readable and long ones distinct")
	}
}
