package firewall_test

import (
	"fmt"
	"testing"

	"github.com/strata-infra/strata/agent/network/firewall"
)

// BenchmarkCompile10k: compiling a 10,000-rule list of distinct sources.
func BenchmarkCompile10k(b *testing.B) {
	list := make([]firewall.Rule, 10000)
	for i := range list {
		v := accept
		if i%2 == 1 {
			v = drop
		}
		list[i] = tcp(fmt.Sprintf("10.%d.%d.0/24", i/256%256, i%256), uint16(1000+i%60000), v)
	}
	b.ResetTimer()
	for range b.N {
		firewall.Compile("fw", list)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/compile")
}

// BenchmarkCompileAgain10k: compiling a 10,000-rule list again with one
// rule in the middle added or removed, reusing the previous compile.
func BenchmarkCompileAgain10k(b *testing.B) {
	list := make([]firewall.Rule, 10000)
	for i := range list {
		v := accept
		if i%2 == 1 {
			v = drop
		}
		list[i] = tcp(fmt.Sprintf("10.%d.%d.0/24", i/256%256, i%256), uint16(1000+i%60000), v)
	}
	with := append(append(append([]firewall.Rule(nil), list[:5000]...), firewall.Rule{Proto: 17, DPort: firewall.Ports{From: 53, To: 53}, Verdict: drop}), list[5000:]...)
	c := firewall.NewCompiler("fw")
	c.Compile(list)
	lists := [][]firewall.Rule{with, list}
	b.ResetTimer()
	for i := range b.N {
		c.Compile(lists[i%2])
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/compile")
}
