package planscope

import (
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/contract"
)

// ref is a project resource's project and name.
type ref struct{ project, name string }

func refOf(r api.Resource) ref { return ref{r.Project, r.Name} }

// hostCount counts, per host, the reasons a thing is on it.
type hostCount map[string]int

// link is one reason a network is on a host.
type link struct {
	net  ref
	host string
}

// index holds the relations that decide what each host's plan holds. It
// keeps only the fields those relations need, decoded once per commit.
type index struct {
	netHosts  map[ref]hostCount    // network: hosts with a reason to hold it
	projHosts map[string]hostCount // project: hosts holding one of its networks
	subnets   map[ref]string       // subnet: its network
	ports     map[ref]portInfo
	portLinks map[ref][]link           // what each port gave netHosts
	instRefs  map[ref]map[ref][]string // port: the instances naming it, with their hosts
	instances map[ref]instInfo
	routers   map[ref]string // router: its host
	fips      map[ref]string // floating IP: its router
	fwgs      map[ref]string // firewall group: its router
	// volHosts counts, per volume, the instances on each host that
	// attach it or boot from it.
	volHosts map[ref]hostCount
	snaps    map[ref]string // volume snapshot: its volume

	// rescoped collects the hosts whose plan gains or loses resources
	// that the commit being applied did not change.
	rescoped map[string]bool
}

type portInfo struct{ net, host string }

type instInfo struct {
	hosts []string // where it runs, and the source of a move
	ports []string // its NICs: the ports made for its networks, then its own
	vols  []string // its boot, root and attached volumes
}

func newIndex() *index {
	return &index{netHosts: map[ref]hostCount{}, projHosts: map[string]hostCount{}, subnets: map[ref]string{},
		ports: map[ref]portInfo{}, portLinks: map[ref][]link{}, instRefs: map[ref]map[ref][]string{},
		instances: map[ref]instInfo{}, routers: map[ref]string{}, fips: map[ref]string{}, fwgs: map[ref]string{},
		volHosts: map[ref]hostCount{}, snaps: map[ref]string{}, rescoped: map[string]bool{}}
}

// apply folds one put or delete into the index.
func (ix *index) apply(op api.Op, r api.Resource) {
	k, del := refOf(r), op == api.OpDelete
	switch r.Kind {
	case "volumesnapshot":
		if del {
			delete(ix.snaps, k)
		} else {
			ix.snaps[k] = contract.Decode[api.VolumeSnapshotSpec](r).Volume
		}
	case "subnet":
		if del {
			delete(ix.subnets, k)
		} else {
			ix.subnets[k] = contract.Decode[api.SubnetSpec](r).Network
		}
	case "port":
		if del {
			delete(ix.ports, k)
		} else {
			ps := contract.Decode[api.PortSpec](r)
			ix.ports[k] = portInfo{net: ps.Network, host: ps.Host}
		}
		ix.relink(k)
	case "instance":
		old := ix.instances[k]
		var now instInfo
		if !del {
			is := contract.Decode[api.InstanceSpec](r)
			if is.Host != "" {
				now.hosts = append(now.hosts, is.Host)
			}
			if m := is.Migration; m != nil && m.Source != "" && m.Source != is.Host {
				now.hosts = append(now.hosts, m.Source)
			}
			now.ports = append(append(now.ports, is.NetworkPorts...), is.Ports...)
			for _, v := range append([]string{is.BootVolume, is.RootVolume}, is.Volumes...) {
				if v != "" {
					now.vols = append(now.vols, v)
				}
			}
			ix.instances[k] = now
		} else {
			delete(ix.instances, k)
		}
		for _, p := range old.ports {
			pk := ref{r.Project, p}
			delete(ix.instRefs[pk], k)
			if len(ix.instRefs[pk]) == 0 {
				delete(ix.instRefs, pk)
			}
		}
		for _, p := range now.ports {
			pk := ref{r.Project, p}
			if ix.instRefs[pk] == nil {
				ix.instRefs[pk] = map[ref][]string{}
			}
			ix.instRefs[pk][k] = now.hosts
		}
		for _, p := range append(old.ports, now.ports...) {
			ix.relink(ref{r.Project, p})
		}
		// Count the new attachments before dropping the old, so that a
		// volume that stays on a host does not leave and come back.
		for _, v := range now.vols {
			for _, h := range now.hosts {
				ix.linkVolume(ref{r.Project, v}, h)
			}
		}
		for _, v := range old.vols {
			for _, h := range old.hosts {
				ix.unlinkVolume(ref{r.Project, v}, h)
			}
		}
	case "router":
		old := ix.routers[k]
		now := ""
		if !del {
			now = contract.Decode[api.RouterSpec](r).Host
			ix.routers[k] = now
		} else {
			delete(ix.routers, k)
		}
		if old != now {
			// Its floating IPs and firewall group move with it.
			ix.rescope(old)
			ix.rescope(now)
		}
	case "floatingip":
		if del {
			delete(ix.fips, k)
		} else {
			ix.fips[k] = contract.Decode[api.FloatingIPSpec](r).Router
		}
	case "firewallgroup":
		if del {
			delete(ix.fwgs, k)
		} else {
			ix.fwgs[k] = contract.Decode[api.FirewallGroupSpec](r).Router
		}
	}
}

func (ix *index) rescope(host string) {
	if host != "" {
		ix.rescoped[host] = true
	}
}

// relink recomputes what port k gives netHosts: its network on the host
// it is bound to, and on the hosts of the instances naming it (the
// destination of a live move sets the network up before the port moves).
func (ix *index) relink(k ref) {
	old := ix.portLinks[k]
	delete(ix.portLinks, k)
	// Link the new reasons before unlinking the old, so that a port that
	// stays where it was moves no network on or off a host.
	defer func() {
		for _, l := range old {
			ix.unlinkNet(l)
		}
	}()
	p, ok := ix.ports[k]
	if !ok || p.net == "" {
		return
	}
	hosts := map[string]bool{}
	if p.host != "" {
		hosts[p.host] = true
	}
	for _, hs := range ix.instRefs[k] {
		for _, h := range hs {
			hosts[h] = true
		}
	}
	var ls []link
	for h := range hosts {
		l := link{net: ref{k.project, p.net}, host: h}
		ix.linkNet(l)
		ls = append(ls, l)
	}
	if len(ls) > 0 {
		ix.portLinks[k] = ls
	}
}

// linkNet and unlinkNet count one reason for a network on a host. When
// the first reason comes or the last goes, the network, its subnets and
// ports (and the project's security groups) enter or leave the host's
// plan: the host is rescoped.
func (ix *index) linkNet(l link) {
	hc := ix.netHosts[l.net]
	if hc == nil {
		hc = hostCount{}
		ix.netHosts[l.net] = hc
	}
	hc[l.host]++
	if hc[l.host] > 1 {
		return
	}
	ix.rescope(l.host)
	pc := ix.projHosts[l.net.project]
	if pc == nil {
		pc = hostCount{}
		ix.projHosts[l.net.project] = pc
	}
	pc[l.host]++
}

func (ix *index) unlinkNet(l link) {
	hc := ix.netHosts[l.net]
	if hc[l.host]--; hc[l.host] > 0 {
		return
	}
	delete(hc, l.host)
	if len(hc) == 0 {
		delete(ix.netHosts, l.net)
	}
	ix.rescope(l.host)
	pc := ix.projHosts[l.net.project]
	if pc[l.host]--; pc[l.host] <= 0 {
		delete(pc, l.host)
		if len(pc) == 0 {
			delete(ix.projHosts, l.net.project)
		}
	}
}

// linkVolume and unlinkVolume count one instance on host using volume v.
// The volume enters or leaves the host's plan with the first or the last
// one: the host is rescoped.
func (ix *index) linkVolume(v ref, host string) {
	hc := ix.volHosts[v]
	if hc == nil {
		hc = hostCount{}
		ix.volHosts[v] = hc
	}
	if hc[host]++; hc[host] == 1 {
		ix.rescope(host)
	}
}

func (ix *index) unlinkVolume(v ref, host string) {
	hc := ix.volHosts[v]
	if hc[host]--; hc[host] > 0 {
		return
	}
	delete(hc, host)
	if len(hc) == 0 {
		delete(ix.volHosts, v)
	}
	ix.rescope(host)
}

// relational reports whether the index decides kind's hosts (else the
// registry's OnHost does).
func relational(kind string) bool {
	switch kind {
	case "network", "subnet", "port", "securitygroup", "router", "floatingip", "firewallgroup", "instance",
		"volume", "volumesnapshot":
		return true
	}
	return false
}

// hosts lists the hosts whose plan holds r, for a relational kind.
func (ix *index) hosts(r api.Resource) []string {
	k := refOf(r)
	switch r.Kind {
	case "network":
		return keys(ix.netHosts[k])
	case "subnet":
		return keys(ix.netHosts[ref{k.project, ix.subnets[k]}])
	case "port":
		return keys(ix.netHosts[ref{k.project, ix.ports[k].net}])
	case "securitygroup":
		return keys(ix.projHosts[k.project])
	case "router":
		return nonEmpty(ix.routers[k])
	case "floatingip":
		return ix.routerHost(k.project, ix.fips[k])
	case "firewallgroup":
		return ix.routerHost(k.project, ix.fwgs[k])
	case "instance":
		return ix.instances[k].hosts
	case "volume":
		return keys(ix.volHosts[k])
	case "volumesnapshot":
		// With its volume: the host that maps a krbd volume takes its
		// snapshots (agent/storage/mappedsnap). Storage hosts hold
		// every snapshot besides.
		return keys(ix.volHosts[ref{k.project, ix.snaps[k]}])
	}
	return nil
}

// holds reports whether host's plan holds r, for a relational kind.
func (ix *index) holds(host string, r api.Resource) bool {
	k := refOf(r)
	switch r.Kind {
	case "network":
		return ix.netHosts[k][host] > 0
	case "subnet":
		return ix.netHosts[ref{k.project, ix.subnets[k]}][host] > 0
	case "port":
		return ix.netHosts[ref{k.project, ix.ports[k].net}][host] > 0
	case "securitygroup":
		return ix.projHosts[k.project][host] > 0
	case "router":
		return ix.routers[k] == host
	case "floatingip":
		rt, ok := ix.routers[ref{k.project, ix.fips[k]}]
		return ok && rt == host
	case "firewallgroup":
		rt, ok := ix.routers[ref{k.project, ix.fwgs[k]}]
		return ok && rt == host
	case "instance":
		for _, h := range ix.instances[k].hosts {
			if h == host {
				return true
			}
		}
	case "volume":
		return ix.volHosts[k][host] > 0
	case "volumesnapshot":
		return ix.volHosts[ref{k.project, ix.snaps[k]}][host] > 0
	}
	return false
}

func (ix *index) routerHost(project, router string) []string {
	if router == "" {
		return nil
	}
	return nonEmpty(ix.routers[ref{project, router}])
}

func keys(hc hostCount) []string {
	out := make([]string, 0, len(hc))
	for h := range hc {
		out = append(out, h)
	}
	return out
}

func nonEmpty(h string) []string {
	if h == "" {
		return nil
	}
	return []string{h}
}
