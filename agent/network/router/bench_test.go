package router_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/nftsync"
	"github.com/strata-infra/strata/agent/network/router"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
	"golang.org/x/sys/unix"
)

// benchPolicy is an ingress policy of n distinct rules.
func benchPolicy(n int) []netspec.FirewallRule {
	rules := make([]netspec.FirewallRule, n)
	for i := range rules {
		act := netspec.ActionAllow
		if i%2 == 1 {
			act = netspec.ActionDeny
		}
		p := 1000 + i%60000
		rules[i] = netspec.FirewallRule{Protocol: netspec.ProtoTCP, Source: fmt.Sprintf("10.%d.%d.0/24", i/256%256, i%256),
			DstPorts: &netspec.PortRange{From: p, To: p}, Action: act}
	}
	return rules
}

func benchRouter(rules []netspec.FirewallRule) netspec.Router {
	r := newRouter("rbench", "proj-a", 10)
	r.Firewall = &netspec.FirewallGroup{ID: "fw", Ports: []string{"if-proj-a"},
		Ingress: &netspec.FirewallPolicy{ID: "in", Rules: rules}}
	return r
}

// iptablesText is the same firewall as iptables-restore input.
func iptablesText(rules []netspec.FirewallRule) string {
	var b strings.Builder
	b.WriteString("*filter\n:FORWARD DROP [0:0]\n:fw_ingress - [0:0]\n")
	b.WriteString("-A FORWARD -m conntrack --ctstate INVALID -j DROP\n-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n")
	b.WriteString("-A FORWARD -o qr-944954499f4 -j fw_ingress\n-A FORWARD -i qr-944954499f4 -j ACCEPT\n")
	for _, r := range rules {
		v := "ACCEPT"
		if r.Action == netspec.ActionDeny {
			v = "DROP"
		}
		fmt.Fprintf(&b, "-A fw_ingress -s %s -p tcp -m tcp --dport %d -j %s\n", r.Source, r.DstPorts.From, v)
	}
	b.WriteString("-A fw_ingress -j DROP\nCOMMIT\n")
	return b.String()
}

// benchNS makes a throwaway namespace and an nft conn into it.
func benchNS(b *testing.B) (string, *nftables.Conn) {
	nettest.RequireRoot(b)
	ns := nettest.Prefix(b) + "bench"
	if err := netnsutil.Create(ns); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(netnsutil.Path(ns))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	c, err := nftsync.Open(int(f.Fd()))
	if err != nil {
		b.Fatal(err)
	}
	return ns, c
}

func delTable(b *testing.B, c *nftables.Conn) {
	c.DelTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: router.TableName})
	if err := c.Flush(); err != nil {
		b.Fatal(err)
	}
}

// timeRestore runs restore (iptables-restore or a variant) on text in ns
// reps times and returns the mean wall time, process start included.
func timeRestore(b *testing.B, ns, restore, text string, reps int) time.Duration {
	// The baseline is part of the figure: without it the benchmark fails
	// in strict mode instead of printing a ratio-less line.
	testenv.RequireBinary(b, restore)
	var total time.Duration
	for range reps {
		cmd := exec.Command(restore)
		cmd.Stdin = strings.NewReader(text)
		start := time.Now()
		if err := netnsutil.Do(ns, cmd.Start); err != nil {
			b.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			b.Fatalf("%s: %v", restore, err)
		}
		total += time.Since(start)
	}
	return total / time.Duration(reps)
}

// benchApply times applying an n-rule policy to an empty namespace in one
// transaction (compiling and the diff included), and iptables-restore of
// the same ruleset (nft-backed and legacy, parsing included) in the same
// namespace, reporting the ratios.
func benchApply(b *testing.B, n int) {
	ns, c := benchNS(b)
	rules := benchPolicy(n)
	var nft time.Duration
	for range b.N {
		start := time.Now()
		if _, err := nftsync.NewEngine().Sync(c, router.Ruleset(benchRouter(rules))); err != nil {
			b.Fatal(err)
		}
		nft += time.Since(start)
		b.StopTimer()
		delTable(b, c)
		b.StartTimer()
	}
	b.StopTimer()
	mean := nft / time.Duration(b.N)
	text := iptablesText(rules)
	b.ReportMetric(float64(mean.Microseconds())/1000, "nft-ms")
	for _, v := range []struct{ bin, unit string }{{"iptables-nft-restore", "iptables-nft"}, {"iptables-legacy-restore", "iptables-legacy"}} {
		ipt := timeRestore(b, ns, v.bin, text, 3)
		if ipt > 0 {
			b.ReportMetric(float64(ipt.Microseconds())/1000, v.unit+"-ms")
			b.ReportMetric(float64(ipt)/float64(mean), v.unit+"/nft")
		}
	}
}

func BenchmarkFirewallApply1k(b *testing.B)  { benchApply(b, 1000) }
func BenchmarkFirewallApply10k(b *testing.B) { benchApply(b, 10000) }

// BenchmarkFirewallApplyOneRuleChange times Sync of a 10,000-rule policy
// when one rule in the middle appears or disappears: the diff and a batch
// of one operation (ms/change); the same with the policy compiled again
// first by the compilers the driver keeps, which reuse the previous
// compile (ms/change-compiled, the figure the target is about); and with
// a fresh compile of all 10,000 rules each time (ms/change-fresh-compile).
func BenchmarkFirewallApplyOneRuleChange(b *testing.B) {
	_, c := benchNS(b)
	rules := benchPolicy(10000)
	with := append(append(append([]netspec.FirewallRule(nil), rules[:5000]...),
		netspec.FirewallRule{Protocol: netspec.ProtoUDP, DstPorts: &netspec.PortRange{From: 53, To: 53}, Action: netspec.ActionReject}),
		rules[5000:]...)
	tables := []nftsync.Table{router.Ruleset(benchRouter(with)), router.Ruleset(benchRouter(rules))}
	eng := nftsync.NewEngine()
	if _, err := eng.Sync(c, tables[1]); err != nil {
		b.Fatal(err)
	}
	ops := 0
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range b.N {
		st, err := eng.Sync(c, tables[i%2])
		if err != nil {
			b.Fatal(err)
		}
		ops += st.Ops()
	}
	b.StopTimer()
	b.ReportMetric(float64(ops)/float64(b.N), "nft-ops/op")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/change")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/change")
	lists := [][]netspec.FirewallRule{with, rules}
	cc := router.NewCompilers()
	if _, err := eng.Sync(c, cc.Ruleset(benchRouter(rules))); err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		unit    string
		ruleset func(netspec.Router) nftsync.Table
	}{{"change-compiled", cc.Ruleset}, {"change-fresh-compile", router.Ruleset}} {
		start, cpu0 := time.Now(), cpuTime()
		for i := range b.N {
			if _, err := eng.Sync(c, v.ruleset(benchRouter(lists[i%2]))); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/"+v.unit)
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/"+v.unit)
	}
}

// cpuTime is the process's user and system time: on a machine shared
// with other work it shows what a change costs where wall time shows the
// queue for the CPU too. The kernel runs a batch in the sending thread,
// so its work is in here.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
