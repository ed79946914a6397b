package firewall_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables/expr"
	"github.com/strata-infra/strata/agent/network/firewall"
	"github.com/strata-infra/strata/agent/network/nftsync"
)

var (
	accept = expr.Verdict{Kind: expr.VerdictAccept}
	drop   = expr.Verdict{Kind: expr.VerdictDrop}
)

func tcp(src string, port uint16, v expr.Verdict) firewall.Rule {
	r := firewall.Rule{Proto: 6, DPort: firewall.Ports{From: port, To: port}, Verdict: v}
	if src != "" {
		r.Src = netip.MustParsePrefix(src)
	}
	return r
}

func texts(t *testing.T, list []firewall.Rule) (string, int) {
	t.Helper()
	rules, sets := firewall.Compile("fw", list)
	var b strings.Builder
	n := 0
	for _, s := range sets {
		n += len(s.Ranges)
	}
	for _, r := range rules {
		b.WriteString(r.Text + "\n")
	}
	return b.String(), n
}

// TestCompileLayers: rules that do not overlap share one lookup whatever
// their verdicts; a rule overlapping an earlier one with another verdict
// goes to a later layer; a rule an earlier one covers is left out; exact
// keys where the fields allow, ranges for port ranges.
func TestCompileLayers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		list  []firewall.Rule
		want  string
		elems int
	}{
		{"disjoint, mixed verdicts", []firewall.Rule{tcp("10.0.0.0/24", 22, accept), tcp("10.0.1.0/24", 22, drop), tcp("10.0.0.0/24", 80, drop)},
			"meta l4proto . ip saddr & 255.255.255.0 . th dport vmap @fw_0hps24D\n", 3},
		{"overlap, other verdict", []firewall.Rule{tcp("10.0.0.0/24", 22, accept), tcp("10.0.0.0/16", 22, drop)},
			"meta l4proto . ip saddr & 255.255.255.0 . th dport vmap @fw_0hps24D\nmeta l4proto . ip saddr & 255.255.0.0 . th dport vmap @fw_1hps16D\n", 2},
		{"covered by an earlier rule", []firewall.Rule{tcp("10.0.0.0/16", 22, drop), tcp("10.0.0.0/24", 22, accept)},
			"meta l4proto . ip saddr & 255.255.0.0 . th dport vmap @fw_0hps16D\n", 1},
		// A protocol alone would be a one-field key nft cannot list: it
		// goes to the address range map.
		{"one exact map per field combination", []firewall.Rule{{Proto: 1, Verdict: accept}, tcp("", 22, drop)},
			"meta l4proto . th dport vmap @fw_0hpD\nmeta l4proto . ip saddr . ip daddr vmap @fw_0a\n", 2},
		{"port ranges: a map of ranges", []firewall.Rule{{Proto: 6, DPort: firewall.Ports{From: 1, To: 1023}, Verdict: drop}, {Proto: 17, Src: netip.MustParsePrefix("10.0.0.0/8"), Verdict: accept}},
			"meta l4proto . ip saddr & 255.0.0.0 vmap @fw_0hps8\nmeta l4proto . ip saddr . ip daddr . th sport . th dport vmap @fw_0p\n", 2},
		{"everything: a plain verdict", []firewall.Rule{tcp("", 22, accept), {Verdict: drop}},
			"meta l4proto . th dport vmap @fw_0hpD\ndrop\n", 1},
	} {
		got, elems := texts(t, tc.list)
		if got != tc.want || elems != tc.elems {
			t.Errorf("%s: got %d elements in\n%swant %d in\n%s", tc.name, elems, got, tc.elems, tc.want)
		}
	}
}

// TestCompile10k: 10,000 rules with distinct sources are one lookup, and
// compiling them stays well under the time a batch takes.
func TestCompile10k(t *testing.T) {
	list := make([]firewall.Rule, 10000)
	for i := range list {
		v := accept
		if i%2 == 1 {
			v = drop
		}
		list[i] = tcp(fmt.Sprintf("10.%d.%d.0/24", i/256%256, i%256), uint16(1000+i%60000), v)
	}
	start := time.Now()
	rules, sets := firewall.Compile("fw", list)
	t.Logf("compiled 10,000 rules in %v", time.Since(start))
	if len(rules) != 1 || len(sets) != 1 || len(sets[0].Ranges) != 10000 {
		t.Errorf("got %d rules, %d sets", len(rules), len(sets))
	}
}

// TestNoNarrowOneFieldKeys: nft asserts when it lists a set whose one
// field is narrower than the 4 bytes the kernel key holds (a protocol, a
// port), so the compiler never makes one.
func TestNoNarrowOneFieldKeys(t *testing.T) {
	list := []firewall.Rule{{Proto: 1, Verdict: accept}, {Proto: 6, DPort: firewall.Ports{From: 22, To: 22}, Verdict: drop},
		{Proto: 17, SPort: firewall.Ports{From: 53, To: 53}, Verdict: accept}, tcp("10.0.0.0/24", 80, accept)}
	_, sets := firewall.Compile("fw", list)
	for _, s := range sets {
		if len(s.Fields) == 1 && (s.Fields[0] == nftsync.L4Proto || s.Fields[0] == nftsync.SPort || s.Fields[0] == nftsync.DPort) {
			t.Errorf("set %s is keyed by one narrow field %v", s.Name, s.Fields)
		}
	}
}
