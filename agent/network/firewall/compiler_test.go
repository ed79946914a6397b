package firewall_test

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/strata-infra/strata/agent/network/firewall"
	"github.com/strata-infra/strata/agent/network/nftsync"
)

// dump renders a compile's rules and maps, every element included.
func dump(rules []nftsync.Rule, sets []nftsync.Set) string {
	var b strings.Builder
	for _, r := range rules {
		b.WriteString(r.Text + "\n")
	}
	for _, s := range sets {
		fmt.Fprintf(&b, "set %s %v exact=%v\n", s.Name, s.Fields, s.Exact)
		for _, r := range s.Ranges {
			fmt.Fprintf(&b, " %s-%s %d:%s\n", hex.EncodeToString(r.From), hex.EncodeToString(r.To), r.Verdict.Kind, r.Verdict.Chain)
		}
	}
	return b.String()
}

// randRule draws from a small space so that rules overlap, cover each
// other and land in several layers.
func randRule(rng *rand.Rand) firewall.Rule {
	pfx := func() netip.Prefix {
		if rng.IntN(3) == 0 {
			return netip.Prefix{}
		}
		bits := []int{8, 16, 24, 32}[rng.IntN(4)]
		a := netip.AddrFrom4([4]byte{10, byte(rng.IntN(2)), byte(rng.IntN(3)), byte(rng.IntN(4))})
		return netip.PrefixFrom(a, bits).Masked()
	}
	ports := func() firewall.Ports {
		switch rng.IntN(3) {
		case 0:
			return firewall.Ports{}
		case 1:
			p := uint16(20 + rng.IntN(5))
			return firewall.Ports{From: p, To: p}
		}
		p := uint16(20 + rng.IntN(5))
		return firewall.Ports{From: p, To: p + uint16(rng.IntN(10))}
	}
	r := firewall.Rule{Proto: []uint8{0, 1, 6, 17}[rng.IntN(4)], Src: pfx(), Dst: pfx(),
		Verdict: []expr.Verdict{accept, drop, {Kind: expr.VerdictGoto, Chain: "rej"}}[rng.IntN(3)]}
	if r.Proto == 6 || r.Proto == 17 {
		r.SPort, r.DPort = ports(), ports()
		if rng.IntN(2) == 0 {
			r.SPort = firewall.Ports{}
		}
	}
	return r
}

// TestCompilerAgainMatchesCompile: a compiler fed a list, then that list
// with one or a few adjacent rules added, removed or replaced, again and
// again, gives each time exactly what a fresh Compile of the list gives,
// and most of those compiles reuse the previous one.
func TestCompilerAgainMatchesCompile(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 1))
	partial := 0
	for run := range 40 {
		list := make([]firewall.Rule, 20+rng.IntN(200))
		for i := range list {
			list[i] = randRule(rng)
		}
		c := firewall.NewCompiler("fw")
		for step := range 60 {
			got := dump(c.Compile(list))
			if want := dump(firewall.Compile("fw", list)); got != want {
				t.Fatalf("run %d step %d: compiled again:\n%s\nfresh:\n%s", run, step, got, want)
			}
			at, n := rng.IntN(len(list)+1), 1+rng.IntN(3)
			next := append([]firewall.Rule(nil), list[:at]...)
			switch rng.IntN(3) {
			case 0: // add
				for range n {
					next = append(next, randRule(rng))
				}
				next = append(next, list[at:]...)
			case 1: // remove
				next = append(next, list[min(at+n, len(list)):]...)
			default: // replace
				for range n {
					next = append(next, randRule(rng))
				}
				next = append(next, list[min(at+n, len(list)):]...)
			}
			if len(next) > 0 {
				list = next
			}
		}
		_, p := c.Counts()
		partial += p
	}
	if partial < 40*60/2 {
		t.Errorf("only %d of %d compiles reused the previous one", partial, 40*60)
	}
}

// TestCompilerAgainKeepsUntouchedMaps: adding a rule that overlaps no
// other leaves every other map as it was, the same elements in the same
// backing array.
func TestCompilerAgainKeepsUntouchedMaps(t *testing.T) {
	list := make([]firewall.Rule, 1000)
	for i := range list {
		list[i] = tcp(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), uint16(1000+i), accept)
	}
	c := firewall.NewCompiler("fw")
	_, before := c.Compile(list)
	with := append(append(append([]firewall.Rule(nil), list[:500]...), firewall.Rule{Proto: 17, DPort: firewall.Ports{From: 53, To: 53}, Verdict: drop}), list[500:]...)
	_, after := c.Compile(with)
	if len(before) != 1 || len(after) != 2 {
		t.Fatalf("got %d maps, then %d; want 1, then 2", len(before), len(after))
	}
	for _, s := range after {
		if s.Name == before[0].Name && &s.Ranges[0] != &before[0].Ranges[0] {
			t.Errorf("map %s was built again", s.Name)
		}
	}
	if full, partial := c.Counts(); full != 1 || partial != 1 {
		t.Errorf("full %d, partial %d compiles; want 1 and 1", full, partial)
	}
}
