package linuxbridge_test

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/linuxbridge"
	"github.com/strata-infra/strata/agent/network/nettest"
)

func newDriver(t testing.TB, h *nettest.Host) *linuxbridge.Driver {
	t.Helper()
	d, err := linuxbridge.New(linuxbridge.Config{NetNS: h.NS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// dump is what the host has: links with their index (a recreated device
// shows), FDB and neighbour entries.
func dump(t testing.TB, ns string) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, args := range [][]string{
		{"-o", "-d", "link", "show"},
		{"fdb", "show"},
		{"neigh", "show", "nud", "all"},
		{"-6", "neigh", "show", "nud", "all"},
	} {
		cmd := "ip"
		if args[0] == "fdb" {
			cmd = "bridge"
		}
		out, err := nettest.Run(ctx, ns, cmd, args...)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(out)
	}
	return normalize(b.String())
}

var (
	timers = regexp.MustCompile(`\w+_timer\s+[\d.]+`)
	// operState is what the kernel says of a link's carrier: its
	// linkwatch sets it a while after the driver's changes (a bridge goes
	// from UNKNOWN to UP once a port forwards, later on a loaded host), so
	// it is the kernel's, not the driver's. The admin UP flag stays.
	operState = regexp.MustCompile(`,LOWER_UP>|\bstate (UP|DOWN|UNKNOWN|LOWERLAYERDOWN|DORMANT) `)
)

// normalize keeps the lines about Strata's devices (links, their own FDB and
// neighbour entries, not what the kernel adds or learns) and sorts them.
func normalize(s string) string {
	var keep []string
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		isLink := strings.Contains(line, ": "+network.BridgePrefix) || strings.Contains(line, ": "+network.VXLANPrefix)
		if isLink || (strings.Contains(line, "dev "+network.VXLANPrefix) && !strings.Contains(line, "master")) {
			line = operState.ReplaceAllStringFunc(line, func(m string) string {
				if m == ",LOWER_UP>" {
					return ">"
				}
				return ""
			})
			keep = append(keep, timers.ReplaceAllString(line, ""))
		}
	}
	sort.Strings(keep)
	return strings.Join(keep, "\n")
}

func set(t testing.TB, d *linuxbridge.Driver, st network.HostState) {
	t.Helper()
	if err := d.Set(context.Background(), st); err != nil {
		t.Fatal(err)
	}
}

func TestSetIsIdempotentAcrossRestart(t *testing.T) {
	lab := nettest.NewLab(t, 3)
	h := lab.Hosts[0]
	nets, ports := nettest.Scale(4, 40, []string{"h1", "h2", "h3"})
	st := lab.HostState(h, nets, ports)
	d := newDriver(t, h)
	set(t, d, st)
	first := d.Changes()
	before := dump(t, h.NS)
	set(t, d, st)
	if n := d.Changes() - first; n != 0 {
		t.Errorf("second Set made %d netlink changes, want 0", n)
	}
	fresh := newDriver(t, h) // an agent restart
	set(t, fresh, st)
	if n := fresh.Changes(); n != 0 {
		t.Errorf("Set after restart made %d netlink changes, want 0", n)
	}
	if after := dump(t, h.NS); after != before {
		t.Errorf("host changed by idempotent Set:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	t.Logf("first Set: %d changes; second and after restart: 0", first)
}

func TestRemoteHostLeavesAndJoins(t *testing.T) {
	lab := nettest.NewLab(t, 3)
	h := lab.Hosts[0]
	nets, ports := nettest.Scale(2, 12, []string{"h1", "h2", "h3"})
	st := lab.HostState(h, nets, ports)
	d := newDriver(t, h)
	set(t, d, st)
	full := dump(t, h.NS)
	h3 := lab.Hosts[2].VTEP.String()
	if !strings.Contains(full, "dst "+h3) {
		t.Fatalf("no fdb entry towards h3 %s:\n%s", h3, full)
	}
	left := st
	left.RemoteVTEPs = map[string]netip.Addr{"h2": lab.Hosts[1].VTEP}
	set(t, d, left)
	if got := dump(t, h.NS); strings.Contains(got, "dst "+h3) {
		t.Errorf("fdb entries towards h3 remain after it left:\n%s", got)
	}
	set(t, d, st)
	if got := dump(t, h.NS); got != full {
		t.Errorf("rejoin did not restore the state:\nwant:\n%s\ngot:\n%s", full, got)
	}
}

// TestStatesConverge applies states in random order, each followed by the
// target; every path must end at the same host state (tailscale
// TestRouterStates spirit).
func TestStatesConverge(t *testing.T) {
	lab := nettest.NewLab(t, 3)
	h := lab.Hosts[0]
	hosts := []string{"h1", "h2", "h3"}
	var states []network.HostState
	for _, sz := range [][2]int{{0, 0}, {1, 3}, {3, 20}, {5, 9}, {2, 30}} {
		nets, ports := nettest.Scale(sz[0], sz[1], hosts)
		states = append(states, lab.HostState(h, nets, ports))
	}
	moved := states[2]
	moved.Ports = append([]network.Port(nil), moved.Ports...)
	moved.Ports[1].Host = "h3" // a port that migrated
	moved.Networks = append([]network.Network(nil), moved.Networks...)
	moved.Networks[0].MTU = 1400
	states = append(states, moved)
	target := states[2]
	d := newDriver(t, h)
	set(t, d, target)
	want := dump(t, h.NS)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 8 {
		for _, i := range rng.Perm(len(states)) {
			set(t, d, states[i])
		}
		set(t, d, target)
		if got := dump(t, h.NS); stripIndexes(got) != stripIndexes(want) {
			t.Fatalf("round %d: did not converge:\nwant:\n%s\ngot:\n%s", round, want, got)
		}
	}
	// A link with our name pattern but without our alias is not ours.
	if _, err := nettest.Run(context.Background(), h.NS, "ip", "link", "add", "sbr-99", "type", "bridge"); err != nil {
		t.Fatal(err)
	}
	set(t, d, states[0])
	got := dump(t, h.NS)
	if strings.Contains(got, network.VXLANPrefix) || strings.Count(got, network.BridgePrefix) != 1 || !strings.Contains(got, "sbr-99:") {
		t.Errorf("empty state must leave only the foreign sbr-99:\n%s", got)
	}
}

var linkIdentity = regexp.MustCompile(`(link/ether|bridge_id|designated_root|designated_bridge|\bstate) \S+`)

// stripIndexes drops "N: " link index prefixes and the random bridge MACs, which
// legitimately change when a network is removed and made again.
func stripIndexes(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if i := strings.Index(line, ": "); i > 0 && i < 6 {
			line = line[i+2:]
		}
		line = linkIdentity.ReplaceAllString(line, "")
		out = append(out, line)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// The kernel's carrier state is not the driver's: a bridge caught before
// and after linkwatch brought it UP normalizes the same, and its admin
// state and STP port state still count.
func TestNormalizeLeavesOutOperState(t *testing.T) {
	early := "3: sbr-1: <BROADCAST,MULTICAST,UP> mtu 1450 qdisc noqueue state UNKNOWN mode DEFAULT group default"
	late := "3: sbr-1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UP mode DEFAULT group default"
	if a, b := normalize(early), normalize(late); a != b {
		t.Errorf("carrier state counted:\n%s\n%s", a, b)
	}
	down := "3: sbr-1: <BROADCAST,MULTICAST> mtu 1450 qdisc noqueue state DOWN mode DEFAULT group default"
	if normalize(down) == normalize(late) {
		t.Error("a link set down normalizes like one that is up")
	}
	port := "4: svx-1: <BROADCAST,MULTICAST,UP> mtu 1450 master sbr-1 bridge_slave state forwarding priority 32"
	if !strings.Contains(normalize(port), "bridge_slave state forwarding") {
		t.Errorf("the STP port state was dropped: %s", normalize(port))
	}
}
