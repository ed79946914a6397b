package secgroup_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/nftsync"
	"github.com/strata-infra/strata/agent/network/secgroup"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
)

func tcp(port int, remoteGroup string) netspec.SecurityGroupRule {
	return netspec.SecurityGroupRule{Direction: netspec.Ingress, Protocol: netspec.ProtoTCP,
		Ports: &netspec.PortRange{From: port, To: port}, RemoteGroup: remoteGroup}
}

var egressAll = netspec.SecurityGroupRule{Direction: netspec.Egress}

// TestSecurityGroups: three endpoints on one network. "srv" allows TCP
// 8080 from anyone and 5432 from members of "app" only; "cli" is in "app",
// "other" is not until it joins. Only allowed ports pass, and the remote
// group follows membership with one set element and no rule change.
func TestSecurityGroups(t *testing.T) {
	for _, drv := range nettest.Drivers {
		t.Run(drv, func(t *testing.T) { testSecurityGroups(t, drv) })
	}
}

func testSecurityGroups(t *testing.T, drv string) {
	lab := nettest.NewLabWith(t, 1, drv)
	h := lab.Hosts[0]
	ag := nettest.NewAgent(t, h)
	n := network.Network{ID: "net-a", VNI: 5001, Subnets: []network.Subnet{{ID: "s", CIDR: netip.MustParsePrefix("10.1.1.0/24")}}}
	ports := []network.Port{
		{ID: "srv", IPs: []netip.Addr{netip.MustParseAddr("10.1.1.10")}, SecurityGroups: []string{"srv"}},
		{ID: "cli", IPs: []netip.Addr{netip.MustParseAddr("10.1.1.11")}, SecurityGroups: []string{"app"}},
		{ID: "other", IPs: []netip.Addr{netip.MustParseAddr("10.1.1.12")}, SecurityGroups: []string{"misc"}},
	}
	st := lab.HostState(h, []network.Network{n}, nil)
	for i := range ports {
		ports[i].NetworkID, ports[i].Host, ports[i].MAC = n.ID, h.Name, nettest.MAC(i+1)
		st.LocalEndpoints = append(st.LocalEndpoints, network.Endpoint{PortID: ports[i].ID, IfName: "eth0", Addr: netip.PrefixFrom(ports[i].IPs[0], 24)})
	}
	st.Ports = ports
	st.SecurityGroups = []netspec.SecurityGroup{
		{ID: "srv", Rules: []netspec.SecurityGroupRule{egressAll, tcp(8080, ""), tcp(5432, "app")}},
		{ID: "app", Rules: []netspec.SecurityGroupRule{egressAll}},
		{ID: "misc", Rules: []netspec.SecurityGroupRule{egressAll}},
	}
	ag.Set(t, st)
	ns := func(id string) string { return ag.EP.Namespace(network.Endpoint{PortID: id}) }
	for _, p := range []int{8080, 8081, 5432} {
		listen(t, ns("srv"), p)
	}
	d, err := secgroup.New(secgroup.Config{NetNS: h.NS, Logger: nettest.Logger(t)})
	must(t, err)
	// On ovs the groups are the integration bridge's flows: the L2
	// driver applies them, the nft table holds no port.
	ovs := drv == "ovs"
	set := func() {
		t.Helper()
		if ovs {
			ag.Set(t, st)
		}
		must(t, d.Set(context.Background(), st))
	}
	set()
	check := func(from string, port int, want bool) {
		t.Helper()
		if got := connected(want, func() bool { return connects(ns(from), "10.1.1.10", port) }); got != want {
			t.Errorf("%s -> srv:%d connected=%v, want %v", from, port, got, want)
		}
	}
	check("cli", 8080, true)
	check("cli", 8081, false)
	check("cli", 5432, true)
	check("other", 8080, true)
	check("other", 5432, false)

	// other leaves misc for app: app's member set takes its address (one
	// range element for .11-.12 in place of .11, misc's loses it), its
	// own four gotos (IPv4 and IPv6, each way) point at app's chains, and
	// misc's chain pair and its IPv6 twins, now unused, go. Nothing else
	// changes.
	st.Ports[2].SecurityGroups = []string{"app"}
	set()
	if s := d.LastSync(); !ovs && (s.ElemsAdded != 1 || s.ElemsDeleted != 2 || s.RulesAdded != 4 || s.RulesDeleted != 4 || s.Objects != 4) {
		t.Errorf("membership change applied as %+v, want 1 element added, 2 deleted, 4 rules replaced, 4 chains deleted", s)
	}
	check("other", 5432, true)
	st.Ports[1].SecurityGroups = []string{"misc"} // cli leaves app
	set()
	check("cli", 5432, false)

	// A rule added to a group changes its ports' shared chains in place:
	// a CIDR rule is one element of a verdict map, and (a rule without a
	// remote end applies to IPv6 too) one rule of the IPv6 twin chain.
	st.SecurityGroups[0].Rules = append(slices.Clone(st.SecurityGroups[0].Rules), tcp(8081, ""))
	set()
	if s := d.LastSync(); !ovs && (s.ElemsAdded != 1 || s.ElemsDeleted != 0 || s.RulesAdded != 1 || s.RulesDeleted != 0 || s.Objects != 0) {
		t.Errorf("a rule added to a group applied as %+v, want exactly one element and one IPv6 rule added", s)
	}
	check("cli", 8081, true)

	// A fresh driver (agent restart) with the same state changes nothing.
	d2, err := secgroup.New(secgroup.Config{NetNS: h.NS})
	must(t, err)
	must(t, d2.Set(context.Background(), st))
	if s := d2.LastSync(); s.Ops() != 0 {
		t.Errorf("restarted driver changed %+v", s)
	}

	// A group the host cannot apply is reported against itself, its port
	// is kept closed (it sends nothing), and every other port's rules
	// still apply.
	st.SecurityGroups = append(st.SecurityGroups, netspec.SecurityGroup{ID: "bad", Rules: []netspec.SecurityGroupRule{{Direction: "sideways"}}})
	st.Ports[2].SecurityGroups = []string{"bad"}
	err = d.Set(context.Background(), st)
	if res := network.ResourceErrors(err); len(res) != 1 || res[0].Kind != "securitygroup" || res[0].ID != "bad" {
		t.Fatalf("bad group: %v", err)
	}
	if ovs {
		// The bridge keeps the port closed, and says which.
		err = ag.All.Set(context.Background(), ag.Bind(st))
		if res := network.ResourceErrors(err); len(res) != 1 || res[0].Kind != "port" || res[0].ID != "other" {
			t.Fatalf("bad group on the bridge: %v", err)
		}
	}
	check("other", 8080, false)
	check("cli", 8080, true)
	st.Ports[2].SecurityGroups = []string{"app"}
	st.SecurityGroups = st.SecurityGroups[:3]
	set()
	check("other", 8080, true)

	if ovs {
		// The bridge's flows take a port's groups with the port itself:
		// a port they do not know matches no flow of table 0 (dropped),
		// as a tap libvirt has just added until the driver adopts it.
		return
	}
	// A port plugged before the table knows it sends nothing (the forward
	// chain ends closed on Strata's bridges); once known, its rules apply.
	known := st
	st.Ports = append(st.Ports, network.Port{ID: "late", NetworkID: n.ID, Host: h.Name, MAC: nettest.MAC(9),
		IPs: []netip.Addr{netip.MustParseAddr("10.1.1.19")}, SecurityGroups: []string{"app"}})
	st.LocalEndpoints = append(st.LocalEndpoints, network.Endpoint{PortID: "late", IfName: "eth0", Addr: netip.MustParsePrefix("10.1.1.19/24")})
	ag.Set(t, st)
	must(t, d.Set(context.Background(), known))
	check("late", 8080, false)
	set()
	check("late", 8080, true)
}

func listen(t *testing.T, ns string, port int) {
	var ln net.Listener
	must(t, netnsutil.Do(ns, func() (err error) {
		ln, err = net.ListenTCP("tcp4", &net.TCPAddr{Port: port})
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func connects(ns, ip string, port int) bool {
	err := netnsutil.Do(ns, func() error {
		c, err := net.DialTimeout("tcp4", net.JoinHostPort(ip, itoa(port)), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	return err == nil
}

// connected is whether try connects, as a check expecting want sees it.
// An allowed connection may first wait on ARP, which a loaded machine can
// delay past one dial's timeout: it gets tries up to a deadline (the
// event, not a timer). A blocked one is one try, which a dropped SYN
// fails by its timeout anyway.
func connected(want bool, try func() bool) bool {
	if ok := try(); ok || !want {
		return ok
	}
	_, err := testenv.Poll(10*time.Second, func() error {
		if try() {
			return nil
		}
		return errors.New("no connection")
	})
	return err == nil
}

func itoa(n int) string { return strconv.Itoa(n) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRefusedBatchIsSplit: when the kernel refuses the shared table's
// batch because of one port (here: any batch that opens port "bad" to its
// group's rules gets an operation the kernel rejects), the driver applies
// the table with every port closed, then opens ports by halves: every
// other port gets its rules, "bad" stays closed, and the error names it.
func TestRefusedBatchIsSplit(t *testing.T) {
	lab := nettest.NewLab(t, 1)
	h := lab.Hosts[0]
	n := network.Network{ID: "net-a", VNI: 5001, Subnets: []network.Subnet{{ID: "s", CIDR: netip.MustParsePrefix("10.1.1.0/24")}}}
	st := lab.HostState(h, []network.Network{n}, nil)
	for i, id := range []string{"p0", "p1", "bad", "p3", "p4"} {
		st.Ports = append(st.Ports, network.Port{ID: id, NetworkID: n.ID, Host: h.Name, MAC: nettest.MAC(i + 1),
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, 1, byte(10 + i)})}, SecurityGroups: []string{"web"}})
	}
	st.SecurityGroups = []netspec.SecurityGroup{{ID: "web", Rules: []netspec.SecurityGroupRule{egressAll, tcp(8080, "")}}}
	d, err := secgroup.New(secgroup.Config{NetNS: h.NS, Logger: nettest.Logger(t)})
	must(t, err)
	batches := 0
	d.SetBeforeSync(func(c *nftables.Conn, want nftsync.Table) {
		batches++
		for _, ch := range want.Chains {
			if ch.Name == secgroup.IngressChain("bad") && strings.HasPrefix(ch.Rules[len(ch.Rules)-1].Text, "goto ") { // open: gotos to its groups' chains
				tab := &nftables.Table{Family: nftables.TableFamilyINet, Name: secgroup.DefaultTable}
				c.DelChain(&nftables.Chain{Table: tab, Name: "no-such-chain"}) // ENOENT: the whole batch is refused
			}
		}
	})
	err = d.Set(context.Background(), st)
	res := network.ResourceErrors(err)
	if len(res) != 1 || res[0].Kind != "port" || res[0].ID != "bad" {
		t.Fatalf("want one error naming port bad, got %v", err)
	}
	f, err := os.Open(netnsutil.Path(h.NS))
	must(t, err)
	defer f.Close()
	c, err := nftsync.Open(int(f.Fd()))
	must(t, err)
	tab := &nftables.Table{Family: nftables.TableFamilyINet, Name: secgroup.DefaultTable}
	for _, id := range []string{"p0", "p1", "bad", "p3", "p4"} {
		rules, err := c.GetRules(tab, &nftables.Chain{Table: tab, Name: secgroup.IngressChain(id)})
		must(t, err)
		open := gotos(rules) == 2 // gotos to its groups' chains (IPv6, IPv4); DHCP answers and a drop when closed
		if open != (id != "bad") {
			t.Errorf("port %s: %d ingress rules (open %v)", id, len(rules), open)
		}
	}
	t.Logf("one refused port among 5: %d batches to find it", batches)
}

// TestUnchangedStateNotCompiled: a pass over the state the driver last
// applied, with nothing committed to the namespace's ruleset since,
// neither compiles the tables nor reads them; a rule deleted behind its
// back, a change to another table and a changed state each compile again,
// and the deleted rule is back.
func TestUnchangedStateNotCompiled(t *testing.T) {
	lab := nettest.NewLab(t, 1)
	h := lab.Hosts[0]
	n := network.Network{ID: "net-a", VNI: 5001, Subnets: []network.Subnet{{ID: "s", CIDR: netip.MustParsePrefix("10.1.1.0/24")}}}
	st := lab.HostState(h, []network.Network{n}, nil)
	for i := range 5 {
		st.Ports = append(st.Ports, network.Port{ID: fmt.Sprintf("p%d", i), NetworkID: n.ID, Host: h.Name, MAC: nettest.MAC(i + 1),
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, 1, byte(10 + i)})}, SecurityGroups: []string{"web"}})
	}
	st.SecurityGroups = []netspec.SecurityGroup{{ID: "web", Rules: []netspec.SecurityGroupRule{egressAll, tcp(8080, "")}}}
	d, err := secgroup.New(secgroup.Config{NetNS: h.NS, Logger: nettest.Logger(t)})
	must(t, err)
	nft := func(args ...string) string {
		t.Helper()
		out, err := nettest.Run(context.Background(), h.NS, "nft", args...)
		if err != nil {
			t.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	set := func(what string, wantBuilds int) {
		t.Helper()
		must(t, d.Set(context.Background(), st))
		if got := d.Builds(); got != wantBuilds {
			t.Errorf("%s: %d compiles in all, want %d", what, got, wantBuilds)
		}
	}
	set("first pass", 1)
	want := nft("list", "table", "inet", secgroup.DefaultTable)
	set("same state", 1)
	set("same state again", 1)

	chain := secgroup.IngressChain("p3")
	handle := ""
	for _, l := range strings.Split(nft("-a", "list", "chain", "inet", secgroup.DefaultTable, chain), "\n") {
		if strings.Contains(l, "drop") || strings.Contains(l, "goto") {
			handle = l[strings.LastIndex(l, " ")+1:]
		}
	}
	if handle == "" {
		t.Fatalf("no rule in %s", chain)
	}
	nft("delete", "rule", "inet", secgroup.DefaultTable, chain, "handle", handle)
	set("after nft delete rule", 2)
	if got := nft("list", "table", "inet", secgroup.DefaultTable); got != want {
		t.Errorf("the deleted rule is not back:\n%s\nwant:\n%s", got, want)
	}
	set("same state after the repair", 2)
	nft("add", "table", "ip", "s19other")
	set("after a change to another table", 3)
	set("same state", 3)
	st.Ports = st.Ports[:4]
	set("a port gone", 4)
	if strings.Contains(nft("list", "table", "inet", secgroup.DefaultTable), "10.1.1.14") {
		t.Error("the port gone is still in the table")
	}
	set("same state", 4)
}

// gotos counts the rules ending in a goto.
func gotos(rules []*nftables.Rule) int {
	n := 0
	for _, r := range rules {
		if len(r.Exprs) == 0 {
			continue
		}
		if v, ok := r.Exprs[len(r.Exprs)-1].(*expr.Verdict); ok && v.Kind == expr.VerdictGoto {
			n++
		}
	}
	return n
}
