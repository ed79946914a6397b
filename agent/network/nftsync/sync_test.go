package nftsync_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/nftsync"
	"github.com/strata-infra/strata/pkg/netnsutil"
)

func testTable(n int) nftsync.Table {
	var rules []nftsync.Rule
	for i := range n {
		rules = append(rules, nftsync.R().Src(netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", i/256%256, i%256))).Proto("tcp").DPort(1000+i, 1000+i).Accept())
	}
	rules = append(rules, nftsync.R().Drop())
	hook, prio, drop := nftables.ChainHookForward, nftables.ChainPriorityFilter, nftables.ChainPolicyDrop
	return nftsync.Table{Family: nftables.TableFamilyIPv4, Name: "strata_test",
		Sets: []nftsync.Set{{Name: "fips", Elems: []nftsync.Elem{{Key: netip.MustParseAddr("192.0.2.1")}}}},
		Chains: []nftsync.Chain{
			{Name: "forward", Type: nftables.ChainTypeFilter, Hook: hook, Priority: prio, Policy: &drop,
				Rules: []nftsync.Rule{nftsync.R().IIF("eth0").Jump("fw"), nftsync.R().SrcIn("fips").Accept()}},
			{Name: "fw", Rules: rules},
		}}
}

// TestOutOfBandChangeRepaired: the generation cache spares the read when
// nothing changed since our own batch, and any change made behind Sync's
// back (here with the nft CLI) is seen and repaired by the next Sync.
func TestOutOfBandChangeRepaired(t *testing.T) {
	ns, f := testNetNS(t, "sync")
	eng := nftsync.NewEngine()
	syncOnce := func() nftsync.Stats {
		t.Helper()
		c, err := nftsync.Open(int(f.Fd())) // a new conn each time, as the drivers do
		if err != nil {
			t.Fatal(err)
		}
		st, err := eng.Sync(c, testTable(20))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	nft := func(args ...string) string {
		t.Helper()
		out, err := nettest.Run(context.Background(), ns, "nft", args...)
		if err != nil {
			t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	list := func() string { return nft("list", "table", "ip", "strata_test") }

	if st := syncOnce(); st.RulesAdded != 23 {
		t.Fatalf("first sync: %+v", st)
	}
	want := list()
	check := func(what string, wantOps int, wantRead bool) {
		t.Helper()
		before := eng.Reads()
		st := syncOnce()
		if st.Ops() != wantOps {
			t.Errorf("%s: %d operations (%+v), want %d", what, st.Ops(), st, wantOps)
		}
		if read := eng.Reads() > before; read != wantRead {
			t.Errorf("%s: read the table: %v, want %v", what, read, wantRead)
		}
		if got := list(); got != want {
			t.Errorf("%s: table differs:\n%s\nwant:\n%s", what, got, want)
		}
	}
	check("unchanged, cached", 0, false)

	// nft delete rule: one rule of fw, by handle.
	h := ""
	for _, l := range strings.Split(nft("-a", "list", "chain", "ip", "strata_test", "fw"), "\n") {
		if strings.Contains(l, "dport 1007 ") {
			h = l[strings.LastIndex(l, " ")+1:]
		}
	}
	if h == "" {
		t.Fatal("rule not found")
	}
	nft("delete", "rule", "ip", "strata_test", "fw", "handle", h)
	check("after nft delete rule", 1, true)
	check("unchanged again, cached", 0, false)

	nft("flush", "chain", "ip", "strata_test", "fw")
	check("after nft flush chain", 21, true)

	nft("add", "rule", "ip", "strata_test", "forward", "accept")
	check("after nft add rule", 1, true)

	nft("delete", "element", "ip", "strata_test", "fips", "{ 192.0.2.1 }")
	check("after nft delete element", 1, true)

	// A change to another table bumps the generation too: read, no change.
	nft("add", "table", "ip", "other")
	check("after a change to another table", 0, true)
	check("unchanged, cached", 0, false)

	// A fresh process (a new engine, no cache) reads and changes nothing.
	eng = nftsync.NewEngine()
	check("fresh process", 0, true)
	check("unchanged, cached", 0, false)

	nft("delete", "table", "ip", "strata_test")
	check("after nft delete table", 28, false) // gone: nothing to read, all recreated
}

// TestSyncTablesFromSkipsUnchanged: a sync from the same inputs as the
// last one, with nothing committed since, neither builds nor reads the
// table; other inputs, a change behind its back (repaired), a change to
// another table, a refused batch or a fresh engine each build again.
func TestSyncTablesFromSkipsUnchanged(t *testing.T) {
	ns, f := testNetNS(t, "from")
	nft := func(args ...string) string {
		t.Helper()
		out, err := nettest.Run(context.Background(), ns, "nft", args...)
		if err != nil {
			t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	eng := nftsync.NewEngine()
	builds := 0
	sync := func(what string, sum byte, table nftsync.Table, wantSkip bool, wantOps int) error {
		t.Helper()
		c, err := nftsync.Open(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		before := builds
		st, skipped, err := eng.SyncTablesFrom(c, nftsync.Sum{sum}, func() []nftsync.Table { builds++; return []nftsync.Table{table} })
		if skipped != wantSkip || (builds == before) != wantSkip {
			t.Errorf("%s: skipped %v after %d builds, want skipped %v", what, skipped, builds-before, wantSkip)
		}
		if err == nil && st.Ops() != wantOps {
			t.Errorf("%s: %d operations (%+v), want %d", what, st.Ops(), st, wantOps)
		}
		return err
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(sync("first", 1, testTable(20), false, 28))
	want := nft("list", "table", "ip", "strata_test")
	reads := eng.Reads()
	must(sync("same inputs", 1, testTable(20), true, 0))
	must(sync("same inputs again", 1, testTable(20), true, 0))
	must(sync("other inputs, same table", 2, testTable(20), false, 0))
	must(sync("those inputs again", 2, testTable(20), true, 0))
	if eng.Reads() != reads {
		t.Errorf("%d reads of the table with nothing changed behind the engine's back", eng.Reads()-reads)
	}
	h := ""
	for _, l := range strings.Split(nft("-a", "list", "chain", "ip", "strata_test", "fw"), "\n") {
		if strings.Contains(l, "dport 1007 ") {
			h = l[strings.LastIndex(l, " ")+1:]
		}
	}
	if h == "" {
		t.Fatal("rule not found")
	}
	nft("delete", "rule", "ip", "strata_test", "fw", "handle", h)
	must(sync("after nft delete rule", 2, testTable(20), false, 1))
	if got := nft("list", "table", "ip", "strata_test"); got != want {
		t.Errorf("not repaired:\n%s\nwant:\n%s", got, want)
	}
	must(sync("unchanged after the repair", 2, testTable(20), true, 0))
	nft("add", "table", "ip", "other")
	must(sync("after a change to another table", 2, testTable(20), false, 0))
	must(sync("unchanged", 2, testTable(20), true, 0))

	bad := testTable(20)
	bad.Chains[1].Rules = append([]nftsync.Rule{nftsync.R().SrcIn("no_such_set").Accept()}, bad.Chains[1].Rules...)
	if err := sync("a refused batch", 3, bad, false, 0); err == nil {
		t.Fatal("a rule naming a missing set was applied")
	}
	must(sync("after a refused batch", 2, testTable(20), false, 0))
	must(sync("unchanged", 2, testTable(20), true, 0))
	eng = nftsync.NewEngine()
	must(sync("a fresh engine", 2, testTable(20), false, 0))
	if got := nft("list", "table", "ip", "strata_test"); got != want {
		t.Errorf("table differs at the end:\n%s\nwant:\n%s", got, want)
	}
}

// TestTeardownDeletesInDependencyOrder: chains that jump to each other and
// name sets all go in one batch, again and again (map order varies), and
// the kernel never answers "device or resource busy": rules, then chains,
// then sets.
func TestTeardownDeletesInDependencyOrder(t *testing.T) {
	_, f := testNetNS(t, "order")
	hook, prio := nftables.ChainHookForward, nftables.ChainPriorityFilter
	base := nftsync.Chain{Name: "forward", Type: nftables.ChainTypeFilter, Hook: hook, Priority: prio}
	full := nftsync.Table{Family: nftables.TableFamilyINet, Name: "strata_order"}
	fwd := base
	for i := range 8 {
		set := fmt.Sprintf("g%d", i)
		full.Sets = append(full.Sets, nftsync.Set{Name: set, Elems: []nftsync.Elem{{Key: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})}}})
		out, in := fmt.Sprintf("o%d", i), fmt.Sprintf("i%d", i)
		fwd.Rules = append(fwd.Rules, nftsync.R().IIF(fmt.Sprintf("br%d", i)).Jump(out))
		full.Chains = append(full.Chains,
			nftsync.Chain{Name: out, Rules: []nftsync.Rule{nftsync.R().DstIn(set).Jump(in), nftsync.R().Drop()}},
			nftsync.Chain{Name: in, Rules: []nftsync.Rule{nftsync.R().SrcIn(set).Accept(), nftsync.R().Drop()}})
	}
	full.Chains = append([]nftsync.Chain{fwd}, full.Chains...)
	eng := nftsync.NewEngine()
	empty := nftsync.Table{Family: nftables.TableFamilyINet, Name: "strata_order", Chains: []nftsync.Chain{base}}
	for i := range 20 {
		for _, want := range []nftsync.Table{full, empty} {
			c, err := nftsync.Open(int(f.Fd()))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := eng.Sync(c, want); err != nil {
				t.Fatalf("round %d, %d chains: %v", i, len(want.Chains), err)
			}
		}
	}
}

// TestBigVerdictMap: a verdict map of 10,000 ranges goes in whole (the
// elements span many messages of one batch), a fresh engine reads it back
// as unchanged, and one element more is one operation.
func TestBigVerdictMap(t *testing.T) {
	_, f := testNetNS(t, "big")
	fields := []nftsync.Field{nftsync.L4Proto, nftsync.SAddr, nftsync.DPort}
	table := func(n int) nftsync.Table {
		s := nftsync.Set{Name: "vm", Fields: fields, VMap: true}
		for i := range n {
			from := nftsync.Pack(fields, []uint32{6, 10<<24 | uint32(i)<<8, 80})
			to := nftsync.Pack(fields, []uint32{6, 10<<24 | uint32(i)<<8 | 255, 80})
			s.Ranges = append(s.Ranges, nftsync.Range{From: from, To: to, Verdict: expr.Verdict{Kind: expr.VerdictAccept}})
		}
		return nftsync.Table{Family: nftables.TableFamilyIPv4, Name: "strata_big", Sets: []nftsync.Set{s},
			Chains: []nftsync.Chain{{Name: "fw", Rules: []nftsync.Rule{nftsync.R().VMap("vm", fields...)}}}}
	}
	sync := func(eng *nftsync.Engine, want nftsync.Table) nftsync.Stats {
		t.Helper()
		c, err := nftsync.Open(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		st, err := eng.Sync(c, want)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := sync(nftsync.NewEngine(), table(10000)); st.ElemsAdded != 10000 {
		t.Fatalf("first sync: %+v", st)
	}
	c, err := nftsync.Open(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	elems, err := c.GetSetElements(&nftables.Set{Table: &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "strata_big"}, Name: "vm"})
	if err != nil || len(elems) != 10000 {
		t.Fatalf("kernel holds %d elements (%v), want 10000", len(elems), err)
	}
	eng := nftsync.NewEngine()
	if st := sync(eng, table(10000)); st.Ops() != 0 {
		t.Errorf("fresh engine, same table: %+v", st)
	}
	if st := sync(eng, table(10001)); st.Ops() != 1 || st.ElemsAdded != 1 {
		t.Errorf("one element more: %+v", st)
	}
}

// testNetNS makes a namespace for t (removed with the test's prefix) and
// opens it; the file is closed after t.
func testNetNS(t *testing.T, name string) (string, *os.File) {
	t.Helper()
	nettest.RequireRoot(t)
	ns := nettest.Prefix(t) + name
	if err := netnsutil.Create(ns); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(netnsutil.Path(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return ns, f
}
