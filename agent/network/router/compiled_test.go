package router_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/agent/network/nftsync"
	"github.com/strata-infra/strata/agent/network/router"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
)

// Verdicts a firewall gives a packet.
const (
	vAccept = "accept"
	vDrop   = "drop"
	vReset  = "reject with tcp reset"
	vUnrch  = "reject with icmp port unreachable"
)

// probe is one packet of the differential test.
type probe struct {
	proto        uint8 // tcp, udp, icmp (echo request) or 253 (no ports)
	src, dst     netip.Addr
	sport, dport uint16
}

func (p probe) String() string {
	return fmt.Sprintf("proto %d %s:%d -> %s:%d", p.proto, p.src, p.sport, p.dst, p.dport)
}

var protoOf = map[string]uint8{netspec.ProtoTCP: 6, netspec.ProtoUDP: 17, netspec.ProtoICMP: 1}

// reference is the firewall's meaning, written as plainly as it can be:
// the first rule that matches decides, nothing matching is dropped.
func reference(rules []netspec.FirewallRule, p probe) string {
	for _, r := range rules {
		if r.Protocol != "" && protoOf[r.Protocol] != p.proto {
			continue
		}
		if src, _ := netspec.ParseCIDR(r.Source); src.IsValid() && !src.Contains(p.src) {
			continue
		}
		if dst, _ := netspec.ParseCIDR(r.Dest); dst.IsValid() && !dst.Contains(p.dst) {
			continue
		}
		if pr := r.SrcPorts; pr != nil && (int(p.sport) < pr.From || int(p.sport) > pr.To) {
			continue
		}
		if pr := r.DstPorts; pr != nil && (int(p.dport) < pr.From || int(p.dport) > pr.To) {
			continue
		}
		switch {
		case r.Action == netspec.ActionAllow:
			return vAccept
		case r.Action == netspec.ActionDeny:
			return vDrop
		case r.Protocol == netspec.ProtoTCP:
			return vReset
		default:
			return vUnrch
		}
	}
	return vDrop
}

// Address regions rules and packets are drawn from: nested and
// neighbouring prefixes, so rules overlap often.
var regions = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16"),
	netip.MustParsePrefix("10.1.2.0/24"), netip.MustParsePrefix("10.1.2.128/25"),
	netip.MustParsePrefix("10.2.0.0/16"), netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("198.51.100.0/24"),
}

func randAddrIn(rng *rand.Rand, p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	if host := 32 - p.Bits(); host > 0 {
		v |= rng.Uint32() & (1<<host - 1)
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func randCIDR(rng *rand.Rand) string {
	if rng.IntN(10) < 3 {
		return ""
	}
	base := regions[rng.IntN(len(regions))]
	bits := base.Bits() + rng.IntN(33-base.Bits())
	return netip.PrefixFrom(randAddrIn(rng, base), bits).Masked().String()
}

func randPorts(rng *rand.Rand) *netspec.PortRange {
	switch rng.IntN(6) {
	case 0, 1, 2:
		return nil
	case 3:
		return &netspec.PortRange{From: 1, To: 1023}
	}
	from := 1 + rng.IntN(30)
	return &netspec.PortRange{From: from, To: from + rng.IntN(6)}
}

func randRules(rng *rand.Rand) []netspec.FirewallRule {
	rules := make([]netspec.FirewallRule, 1+rng.IntN(40))
	for i := range rules {
		r := netspec.FirewallRule{Source: randCIDR(rng), Dest: randCIDR(rng)}
		r.Protocol = []string{"", "", netspec.ProtoTCP, netspec.ProtoTCP, netspec.ProtoUDP, netspec.ProtoUDP, netspec.ProtoICMP}[rng.IntN(7)]
		if r.Protocol == netspec.ProtoTCP || r.Protocol == netspec.ProtoUDP {
			r.SrcPorts, r.DstPorts = randPorts(rng), randPorts(rng)
			if rng.IntN(3) > 0 {
				r.SrcPorts = nil
			}
		}
		r.Action = []string{netspec.ActionAllow, netspec.ActionAllow, netspec.ActionDeny, netspec.ActionReject}[rng.IntN(4)]
		if err := r.Validate(); err != nil {
			panic(fmt.Sprintf("generated an invalid rule %+v: %v", r, err))
		}
		rules[i] = r
	}
	return rules
}

func randPort(rng *rand.Rand) uint16 {
	if rng.IntN(10) < 7 {
		return uint16(1 + rng.IntN(40))
	}
	return uint16(1 + rng.IntN(65535))
}

// randProbe draws a packet; half of them aim inside a rule's prefixes.
func randProbe(rng *rand.Rand, rules []netspec.FirewallRule) probe {
	p := probe{proto: []uint8{6, 6, 6, 17, 17, 17, 1, 1, 253}[rng.IntN(9)]}
	pick := func(cidr string) netip.Addr {
		if pr, _ := netspec.ParseCIDR(cidr); pr.IsValid() && rng.IntN(2) == 0 {
			return randAddrIn(rng, pr)
		}
		return randAddrIn(rng, regions[rng.IntN(len(regions))])
	}
	r := rules[rng.IntN(len(rules))]
	p.src, p.dst = pick(r.Source), pick(r.Dest)
	if p.proto == 6 || p.proto == 17 {
		p.sport, p.dport = randPort(rng), randPort(rng)
	}
	return p
}

// envInt reads a positive integer from the environment, or def.
func envInt(t *testing.T, name string, def int64) int64 {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, s, err)
	}
	return v
}

// testMark marks the probes: only they go through the firewall.
const testMark = 0x19

// TestCompiledFirewallMatchesReference: random ordered rule lists, each
// compiled by router.PolicyChain and loaded into a real kernel, and random
// packets; for every packet the kernel's verdict must be the reference
// evaluator's. The packets are sent by a raw socket in a test namespace
// through an output chain that jumps to the compiled policy (marked
// packets only) and leave by a tun device the test reads: an accepted
// probe comes out itself, a rejected one as a TCP reset or an ICMP port
// unreachable, a dropped one not at all. An unmarked sentinel packet after
// each probe tells when everything the probe caused has come out.
// STRATA_FW_SEED, STRATA_FW_LISTS and STRATA_FW_PACKETS override the
// seed, the number of lists (default 100) and of packets per list (1,000).
func TestCompiledFirewallMatchesReference(t *testing.T) {
	nettest.RequireRoot(t)
	_, err := os.Stat("/dev/net/tun")
	testenv.Require(t, "/dev/net/tun", err)
	seed := uint64(envInt(t, "STRATA_FW_SEED", time.Now().UnixNano()))
	lists, packets := int(envInt(t, "STRATA_FW_LISTS", 100)), int(envInt(t, "STRATA_FW_PACKETS", 1000))
	t.Logf("seed %d (STRATA_FW_SEED=%d reruns it), %d rule lists x %d packets", seed, seed, lists, packets)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))

	ns := nettest.Prefix(t) + "t19fw"
	if err := netnsutil.Create(ns); err != nil {
		t.Fatal(err)
	}
	w := newWire(t, ns, testMark)
	f, err := os.Open(netnsutil.Path(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	eng := nftsync.NewEngine()
	start := time.Now()
	var compiled, nftRules, disagreements int
	for l := range lists {
		rules := randRules(rng)
		policy, sets := router.PolicyChain(router.ChainFWIn, netspec.FirewallPolicy{Rules: rules})
		compiled += len(rules)
		nftRules += len(policy.Rules)
		out := nftsync.Chain{Name: "out", Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookOutput,
			Priority: nftables.ChainPriorityFilter, Rules: []nftsync.Rule{nftsync.R().Mark(testMark).Jump(router.ChainFWIn)}}
		table := nftsync.Table{Family: nftables.TableFamilyIPv4, Name: "t19fw", Sets: sets,
			Chains: append(append([]nftsync.Chain{out}, router.RejectChains()...), policy)}
		c, err := nftsync.Open(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := eng.Sync(c, table); err != nil {
			t.Fatalf("list %d: load: %v\nrules: %+v", l, err, rules)
		}
		for range packets {
			p := randProbe(rng, rules)
			want := reference(rules, p)
			got, err := w.verdict(p)
			if err != nil {
				t.Fatalf("list %d: %s: %v", l, p, err)
			}
			if got != want {
				disagreements++
				if disagreements <= 10 {
					t.Errorf("list %d, %s: kernel %q, reference %q\nrules:\n%s", l, p, got, want, ruleList(rules))
				}
			}
		}
	}
	t.Logf("%d lists, %d packets, %d disagreements in %v; %d firewall rules compiled into %d nft rules",
		lists, lists*packets, disagreements, time.Since(start).Round(time.Millisecond), compiled, nftRules)
	if disagreements > 0 {
		t.Errorf("%d disagreements (seed %d)", disagreements, seed)
	}
}

func ruleList(rules []netspec.FirewallRule) string {
	s := ""
	for i, r := range rules {
		s += fmt.Sprintf("  %d: proto %q src %q dst %q sports %v dports %v %s\n", i, r.Protocol, r.Source, r.Dest, r.SrcPorts, r.DstPorts, r.Action)
	}
	return s
}
