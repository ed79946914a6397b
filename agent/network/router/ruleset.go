package router

import (
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/strata-infra/strata/agent/network/firewall"
	"github.com/strata-infra/strata/agent/network/nftsync"
	"github.com/strata-infra/strata/pkg/netspec"
	"golang.org/x/sys/unix"
)

// TableName is the one nft table in every router namespace (family ip).
// The namespace is the router's alone, so the name needs no router ID; the
// table is still the only thing the driver ever changes there.
const TableName = "strata_router"

// Names of the sets, maps and chains of a router's table.
const (
	MapFIPDNAT   = "fip_dnat" // floating IP -> fixed IP
	MapFIPSNAT   = "fip_snat" // fixed IP -> floating IP
	ChainPre     = "prerouting"
	ChainPost    = "postrouting"
	ChainForward = "forward"
	ChainFWIn    = "fw_ingress"
	ChainFWOut   = "fw_egress"
	// The chains a firewall's reject verdicts go to.
	ChainRejectTCP  = "fw_reset"   // TCP reset
	ChainRejectICMP = "fw_unreach" // ICMP port unreachable
)

// Ruleset is the desired table of router r: NAT for floating IPs (DNAT in,
// SNAT out) and for the rest (SNAT to the gateway IP), a stateful forward
// filter (invalid dropped, established and related accepted, internal
// traffic and DNATed traffic allowed, the rest dropped) and the firewall
// group's policies in their own chains. It is a pure function.
func Ruleset(r netspec.Router) nftsync.Table { return (*Compilers)(nil).Ruleset(r) }

// Compilers keeps a firewall.Compiler per router chain, so that the
// ruleset of a router whose policy changed by a rule or a few is
// converted and compiled only where the change reaches (see
// firewall.Compiler). A driver owns one; it is not safe for concurrent
// use.
type Compilers struct{ m map[string]*chainCompiler }

// chainCompiler is one chain's compiler and the policy rules it was last
// given, as given and as converted.
type chainCompiler struct {
	c    *firewall.Compiler
	src  []netspec.FirewallRule
	list []firewall.Rule
}

// NewCompilers returns an empty set of compilers.
func NewCompilers() *Compilers { return &Compilers{m: map[string]*chainCompiler{}} }

// Forget drops the compilers of the routers keep says no.
func (cc *Compilers) Forget(keep func(router string) bool) {
	for k := range cc.m {
		if id, _, _ := strings.Cut(k, "\x00"); !keep(id) {
			delete(cc.m, k)
		}
	}
}

// compile converts and compiles the policy rules of router id's chain;
// nil compilers compile afresh.
func (cc *Compilers) compile(id, chain string, rules []netspec.FirewallRule) ([]nftsync.Rule, []nftsync.Set) {
	if cc == nil {
		list := make([]firewall.Rule, len(rules))
		for i, fr := range rules {
			list[i] = FirewallRule(fr)
		}
		return firewall.Compile(chain, list)
	}
	k := id + "\x00" + chain
	x := cc.m[k]
	if x == nil {
		x = &chainCompiler{c: firewall.NewCompiler(chain)}
		cc.m[k] = x
	}
	p, s := 0, 0
	for p < len(x.src) && p < len(rules) && sameRule(x.src[p], rules[p]) {
		p++
	}
	for s < len(x.src)-p && s < len(rules)-p && sameRule(x.src[len(x.src)-1-s], rules[len(rules)-1-s]) {
		s++
	}
	mid := rules[p : len(rules)-s]
	conv := make([]firewall.Rule, len(mid))
	for i, fr := range mid {
		conv[i] = FirewallRule(fr)
	}
	x.list = slices.Replace(x.list, p, len(x.src)-s, conv...)
	x.src = slices.Replace(x.src, p, len(x.src)-s, mid...)
	return x.c.Compile(x.list)
}

func sameRule(a, b netspec.FirewallRule) bool {
	samePorts := func(a, b *netspec.PortRange) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }
	return a.Protocol == b.Protocol && a.Source == b.Source && a.Dest == b.Dest && a.Action == b.Action &&
		samePorts(a.SrcPorts, b.SrcPorts) && samePorts(a.DstPorts, b.DstPorts)
}

// Ruleset is the package's Ruleset, compiled by cc.
func (cc *Compilers) Ruleset(r netspec.Router) nftsync.Table {
	qg := GatewayLeg(r.ID)
	t := nftsync.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
	dnat := nftsync.Set{Name: MapFIPDNAT, IsMap: true}
	snat := nftsync.Set{Name: MapFIPSNAT, IsMap: true}
	for _, f := range r.FloatingIPs {
		dnat.Elems = append(dnat.Elems, nftsync.Elem{Key: f.IP, Val: f.FixedIP})
		snat.Elems = append(snat.Elems, nftsync.Elem{Key: f.FixedIP, Val: f.IP})
	}
	t.Sets = []nftsync.Set{dnat, snat}

	pre := nftsync.Chain{Name: ChainPre, Type: nftables.ChainTypeNAT, Hook: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest}
	post := nftsync.Chain{Name: ChainPost, Type: nftables.ChainTypeNAT, Hook: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource}
	if r.Gateway != nil {
		pre.Rules = append(pre.Rules, nftsync.R().IIF(qg).DNATByDaddr(MapFIPDNAT))
		post.Rules = append(post.Rules, nftsync.R().OIF(qg).SNATBySaddr(MapFIPSNAT))
		if r.SNAT {
			post.Rules = append(post.Rules, nftsync.R().OIF(qg).SNATTo(r.Gateway.Addr.Addr()))
		}
	}
	fwd, fwChains, fwSets := cc.forward(r)
	t.Chains = append([]nftsync.Chain{pre, post, fwd}, fwChains...)
	t.Sets = append(t.Sets, fwSets...)
	return t
}

func (cc *Compilers) forward(r netspec.Router) (nftsync.Chain, []nftsync.Chain, []nftsync.Set) {
	drop := nftables.ChainPolicyDrop
	c := nftsync.Chain{Name: ChainForward, Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookForward,
		Priority: nftables.ChainPriorityFilter, Policy: &drop}
	c.Rules = append(c.Rules, nftsync.R().CtState(nftsync.CtInvalid).Drop())
	var early, late []nftsync.Rule // firewall dispatch before and after established
	var chains []nftsync.Chain
	var sets []nftsync.Set
	if fw := r.Firewall; fw != nil && (fw.Ingress != nil || fw.Egress != nil) {
		chains = append(chains, RejectChains()...)
	}
	if fw := r.Firewall; fw != nil {
		for _, p := range []struct {
			pol     *netspec.FirewallPolicy
			chain   string
			ingress bool
		}{{fw.Ingress, ChainFWIn, true}, {fw.Egress, ChainFWOut, false}} {
			if p.pol == nil {
				continue
			}
			ch, s := cc.policyChain(r.ID, p.chain, *p.pol)
			chains, sets = append(chains, ch), append(sets, s...)
			for _, port := range fw.Ports {
				leg := InternalLeg(port)
				b := nftsync.R().IIF(leg)
				if p.ingress {
					b = nftsync.R().OIF(leg)
				}
				if p.pol.Existing {
					early = append(early, b.CtOriginal().Jump(p.chain))
				} else {
					late = append(late, b.Jump(p.chain))
				}
			}
		}
	}
	c.Rules = append(c.Rules, early...)
	c.Rules = append(c.Rules, nftsync.R().CtState(nftsync.CtEstablished|nftsync.CtRelated).Accept())
	c.Rules = append(c.Rules, late...)
	for _, in := range r.Interfaces {
		c.Rules = append(c.Rules, nftsync.R().IIF(InternalLeg(in.ID)).Accept())
	}
	if r.Gateway != nil {
		c.Rules = append(c.Rules, nftsync.R().IIF(GatewayLeg(r.ID)).CtDNAT().Accept())
	}
	return c, chains, sets
}

// RejectChains are where a firewall's reject verdicts go: a verdict map
// holds verdicts only, so a reject is a goto to one of these.
func RejectChains() []nftsync.Chain {
	return []nftsync.Chain{
		{Name: ChainRejectTCP, Rules: []nftsync.Rule{nftsync.R().Reject(true)}},
		{Name: ChainRejectICMP, Rules: []nftsync.Rule{nftsync.R().Reject(false)}},
	}
}

// PolicyChain compiles a firewall policy (its rules in order, the first
// match wins, an implicit drop at the end) into chain name and the verdict
// maps it looks up (see package firewall).
func PolicyChain(name string, p netspec.FirewallPolicy) (nftsync.Chain, []nftsync.Set) {
	return (*Compilers)(nil).policyChain("", name, p)
}

func (cc *Compilers) policyChain(id, name string, p netspec.FirewallPolicy) (nftsync.Chain, []nftsync.Set) {
	rules, sets := cc.compile(id, name, p.Rules)
	return nftsync.Chain{Name: name, Rules: append(rules, nftsync.R().Drop())}, sets
}

var protoNums = map[string]uint8{netspec.ProtoTCP: unix.IPPROTO_TCP, netspec.ProtoUDP: unix.IPPROTO_UDP, netspec.ProtoICMP: unix.IPPROTO_ICMP}

// FirewallRule is one validated firewall rule as the compiler takes it.
func FirewallRule(fr netspec.FirewallRule) firewall.Rule {
	src, _ := netspec.ParseCIDR(fr.Source)
	dst, _ := netspec.ParseCIDR(fr.Dest)
	r := firewall.Rule{Proto: protoNums[fr.Protocol], Src: src, Dst: dst}
	if pr := fr.SrcPorts; pr != nil {
		r.SPort = firewall.Ports{From: uint16(pr.From), To: uint16(pr.To)}
	}
	if pr := fr.DstPorts; pr != nil {
		r.DPort = firewall.Ports{From: uint16(pr.From), To: uint16(pr.To)}
	}
	switch {
	case fr.Action == netspec.ActionAllow:
		r.Verdict = expr.Verdict{Kind: expr.VerdictAccept}
	case fr.Action == netspec.ActionReject && fr.Protocol == netspec.ProtoTCP:
		r.Verdict = expr.Verdict{Kind: expr.VerdictGoto, Chain: ChainRejectTCP}
	case fr.Action == netspec.ActionReject:
		r.Verdict = expr.Verdict{Kind: expr.VerdictGoto, Chain: ChainRejectICMP}
	default:
		r.Verdict = expr.Verdict{Kind: expr.VerdictDrop}
	}
	return r
}
