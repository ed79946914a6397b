package router

import (
	"github.com/google/nftables"
	"github.com/strata-infra/strata/agent/network/nftsync"
	"github.com/strata-infra/strata/pkg/netspec"
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
)

// Ruleset is the desired table of router r: NAT for floating IPs (DNAT in,
// SNAT out) and for the rest (SNAT to the gateway IP), a stateful forward
// filter (invalid dropped, established and related accepted, internal
// traffic and DNATed traffic allowed, the rest dropped) and the firewall
// group's policies in their own chains. It is a pure function.
func Ruleset(r netspec.Router) nftsync.Table {
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
	fwd, fwChains := forward(r)
	t.Chains = append([]nftsync.Chain{pre, post, fwd}, fwChains...)
	return t
}

func forward(r netspec.Router) (nftsync.Chain, []nftsync.Chain) {
	drop := nftables.ChainPolicyDrop
	c := nftsync.Chain{Name: ChainForward, Type: nftables.ChainTypeFilter, Hook: nftables.ChainHookForward,
		Priority: nftables.ChainPriorityFilter, Policy: &drop}
	c.Rules = append(c.Rules, nftsync.R().CtState(nftsync.CtInvalid).Drop())
	var early, late []nftsync.Rule // firewall dispatch before and after established
	var chains []nftsync.Chain
	if fw := r.Firewall; fw != nil {
		for _, p := range []struct {
			pol     *netspec.FirewallPolicy
			chain   string
			ingress bool
		}{{fw.Ingress, ChainFWIn, true}, {fw.Egress, ChainFWOut, false}} {
			if p.pol == nil {
				continue
			}
			chains = append(chains, PolicyChain(p.chain, *p.pol))
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
	return c, chains
}

// PolicyChain renders a firewall policy: its rules in order, the first
// match wins, and an implicit drop at the end.
func PolicyChain(name string, p netspec.FirewallPolicy) nftsync.Chain {
	c := nftsync.Chain{Name: name}
	for _, fr := range p.Rules {
		c.Rules = append(c.Rules, FirewallRule(fr))
	}
	c.Rules = append(c.Rules, nftsync.R().Drop())
	return c
}

// FirewallRule renders one validated firewall rule.
func FirewallRule(fr netspec.FirewallRule) nftsync.Rule {
	src, _ := netspec.ParseCIDR(fr.Source)
	dst, _ := netspec.ParseCIDR(fr.Dest)
	b := nftsync.R().Proto(fr.Protocol).Src(src).Dst(dst)
	if pr := fr.SrcPorts; pr != nil {
		b = b.SPort(pr.From, pr.To)
	}
	if pr := fr.DstPorts; pr != nil {
		b = b.DPort(pr.From, pr.To)
	}
	switch fr.Action {
	case netspec.ActionAllow:
		return b.Accept()
	case netspec.ActionReject:
		return b.Reject(fr.Protocol == netspec.ProtoTCP)
	default:
		return b.Drop()
	}
}
