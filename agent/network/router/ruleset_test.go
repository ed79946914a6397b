package router_test

import (
	"strings"
	"testing"

	"github.com/strata-infra/strata/agent/network/nftsync"
	"github.com/strata-infra/strata/agent/network/router"
	"github.com/strata-infra/strata/pkg/netspec"
)

// render is a table as text: chains in order, one rule per line.
func render(t nftsync.Table) string {
	var b strings.Builder
	for _, s := range t.Sets {
		b.WriteString("set " + s.Name + ":")
		for _, r := range s.Ranges {
			b.WriteString("\n  " + r.Text(s.Fields, s.VMap))
		}
		for _, e := range s.Elems {
			b.WriteString(" " + e.Key.String())
			if s.IsMap {
				b.WriteString(">" + e.Val.String())
			}
		}
		b.WriteString("\n")
	}
	for _, c := range t.Chains {
		b.WriteString("chain " + c.Name + "\n")
		for _, r := range c.Rules {
			b.WriteString("  " + r.Text + "\n")
		}
	}
	return b.String()
}

// TestRulesetRendering: the pure builder's output for a router with SNAT, a
// floating IP and a firewall group: each policy compiled to verdict map
// lookups (exact keys of the fields a rule matches where it can, ranges
// for port ranges), the allow that the deny before it shadows left out, a
// reject going to the reject chain.
func TestRulesetRendering(t *testing.T) {
	r := newRouter("ra", "proj-a", 10)
	r.FloatingIPs = []netspec.FloatingIP{{IP: adr("203.0.113.50"), FixedIP: adr("10.1.1.11")}}
	r.Firewall = &netspec.FirewallGroup{ID: "fw", Ports: []string{"if-proj-a"},
		Ingress: &netspec.FirewallPolicy{ID: "in", Existing: true, Rules: []netspec.FirewallRule{
			deny(8080), allow(8080),
			{Protocol: "udp", Source: "198.51.100.0/24", Dest: "10.1.1.0/25", SrcPorts: &netspec.PortRange{From: 1, To: 1023}, DstPorts: &netspec.PortRange{From: 53, To: 53}, Action: "reject"},
		}},
		Egress: &netspec.FirewallPolicy{ID: "out", Rules: []netspec.FirewallRule{{Protocol: "icmp", Action: "allow"}}}}
	qr, qg := router.InternalLeg("if-proj-a"), router.GatewayLeg("ra")
	want := strings.NewReplacer("QR", qr, "QG", qg).Replace(`set fip_dnat: 203.0.113.50>10.1.1.11
set fip_snat: 10.1.1.11>203.0.113.50
set fw_ingress_0hpD:
  6 . 8080 : drop
set fw_ingress_0p:
  17 . 198.51.100.0/24 . 10.1.1.0/25 . 1-1023 . 53 : goto fw_unreach
set fw_egress_0a:
  1 . 0.0.0.0/0 . 0.0.0.0/0 : accept
chain prerouting
  iifname "QG" dnat to ip daddr map @fip_dnat
chain postrouting
  oifname "QG" snat to ip saddr map @fip_snat
  oifname "QG" snat to 203.0.113.10
chain forward
  ct state invalid drop
  oifname "QR" ct direction original jump fw_ingress
  ct state established,related accept
  iifname "QR" jump fw_egress
  iifname "QR" accept
  iifname "QG" ct status dnat accept
chain fw_reset
  reject with tcp reset
chain fw_unreach
  reject
chain fw_ingress
  meta l4proto . th dport vmap @fw_ingress_0hpD
  meta l4proto . ip saddr . ip daddr . th sport . th dport vmap @fw_ingress_0p
  drop
chain fw_egress
  meta l4proto . ip saddr . ip daddr vmap @fw_egress_0a
  drop
`)
	if got := render(router.Ruleset(r)); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	for _, name := range []string{qr, qg, router.HostInternalLeg("ra", "if-proj-a"), router.HostGatewayLeg("ra")} {
		if len(name) > 15 {
			t.Errorf("link name %q longer than IFNAMSIZ-1", name)
		}
	}
}

// TestRuleKeysStable: identities depend on text and repetition only, so a
// fresh process computes the same ones.
func TestRuleKeysStable(t *testing.T) {
	rs := []nftsync.Rule{nftsync.R().Drop(), nftsync.R().Proto("tcp").Accept(), nftsync.R().Drop()}
	a, b := nftsync.RuleKeys(rs), nftsync.RuleKeys(rs)
	if strings.Join(a, ",") != strings.Join(b, ",") || a[0] == a[2] || a[0] == a[1] {
		t.Fatalf("keys %v / %v: want stable and distinct", a, b)
	}
}
