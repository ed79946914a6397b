// Package planmap turns the agent's plan (networks, subnets and ports of
// every project) and the gossip membership into the network drivers'
// desired HostState for this host. It is pure: no netlink, no I/O.
package planmap

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/contract"
	"github.com/strata-infra/strata/pkg/netspec"
)

// Self is this host, as the network drivers see it.
type Self struct {
	Host        string
	VTEP        netip.Addr
	UnderlayDev string
}

// NetworkID is a network's ID on hosts (netspec derives every host ID).
func NetworkID(vni uint32) string { return netspec.NetworkID(vni) }

// PortID is a project resource's ID on hosts (ports, routers, firewall
// groups): netspec.ResourceID.
func PortID(project, name string) string { return netspec.ResourceID(project, name) }

type netKey struct{ project, name string }

// Problems are the resources this host cannot map, each with why. They are
// left out of the state (a security group is replaced by one that allows
// nothing: its ports fail closed) and reported against their own resource;
// everything else maps and converges.
type Problems map[api.Key]error

func (p Problems) add(k api.Key, err error) {
	if _, dup := p[k]; !dup {
		p[k] = err
	}
}

// HostState builds this host's desired network state. Networks come to the
// host when at least one of their ports is bound to it (its DHCP port
// included); then every bound port of the network is listed, so remote
// ones get FDB and neighbour entries. remote maps live peer hosts to their
// VTEPs, from gossip. A resource that cannot be mapped is left out and
// named in Problems.
func HostState(h *plan.Host, self Self, remote map[string]netip.Addr) (network.HostState, Problems) {
	probs := Problems{}
	for k, err := range h.Invalid {
		probs.add(k, err)
	}
	st := network.HostState{Host: self.Host, LocalVTEP: self.VTEP, UnderlayDev: self.UnderlayDev, RemoteVTEPs: map[string]netip.Addr{}}
	for h, a := range remote {
		if h != self.Host {
			st.RemoteVTEPs[h] = a
		}
	}
	nets := map[netKey]*network.Network{}
	for _, r := range h.Networks.Items {
		nets[netKey{r.Project, r.Name}] = &network.Network{ID: NetworkID(r.Spec.SegmentationID), VNI: r.Spec.SegmentationID, Type: r.Spec.Type, MTU: r.Spec.MTU}
	}
	for _, r := range h.Subnets.Items {
		n := nets[netKey{r.Project, r.Spec.Network}]
		if n == nil {
			continue // its network is not in the plan yet
		}
		sub, err := subnet(r.Name, r.Spec)
		if err != nil {
			probs.add(r.Key(), fmt.Errorf("subnet %s: %w", r.Key(), err))
			continue
		}
		n.Subnets = append(n.Subnets, sub)
	}
	type boundPort struct {
		net  netKey
		port network.Port
		ep   bool
	}
	var ports []boundPort
	here := map[netKey]bool{}
	incoming := incomingPorts(h, self.Host)
	for _, r := range h.Ports.Items {
		ps := r.Spec
		k := netKey{r.Project, ps.Network}
		n := nets[k]
		from := ""
		if incoming[api.Key{Kind: "port", Project: r.Project, Name: r.Name}] && ps.Host != self.Host {
			from, ps.Host = ps.Host, self.Host
		}
		if n == nil || ps.Host == "" {
			continue // unbound ports have no VTEP to point at
		}
		p, err := port(r.Resource, ps, n.ID)
		if err != nil {
			probs.add(r.Key(), fmt.Errorf("port %s: %w", r.Key(), err))
			continue
		}
		p.From = from
		ports = append(ports, boundPort{net: k, port: p, ep: ps.Owner == api.PortOwnerEndpoint})
		if ps.Host == self.Host {
			here[k] = true
		}
	}
	for k, n := range nets {
		if here[k] {
			sort.Slice(n.Subnets, func(i, j int) bool { return n.Subnets[i].ID < n.Subnets[j].ID })
			st.Networks = append(st.Networks, *n)
		}
	}
	sort.Slice(st.Networks, func(i, j int) bool { return st.Networks[i].VNI < st.Networks[j].VNI })
	for _, bp := range ports {
		if !here[bp.net] {
			continue
		}
		st.Ports = append(st.Ports, bp.port)
		if bp.ep && bp.port.Host == self.Host {
			st.LocalEndpoints = append(st.LocalEndpoints, network.Endpoint{PortID: bp.port.ID, IfName: "eth0", MAC: bp.port.MAC, DHCP: true})
		}
	}
	st.Routers = routers(h, self.Host, probs)
	st.SecurityGroups = securityGroups(h, probs)
	return st, probs
}

// incomingPorts are the ports of the instances live-migrating to host:
// their guest arrives while the ports are still bound to the source (the
// coordinator rebinds them once the guest runs here), and its first frames
// here, the announcement of its MAC among them, must pass. So the
// destination maps them as its own from the start of the move: their
// networks are set up, their port security and security groups are in
// force (keyed by the tap's name, before libvirt makes the tap), and no
// tunnel entry or ARP proxy here speaks for the guest at the source once
// it runs here. Until the guest moves, traffic to it floods to the source
// (network.Port.From), which holds the port too.
func incomingPorts(h *plan.Host, host string) map[api.Key]bool {
	in := map[api.Key]bool{}
	for _, r := range h.Instances.Items {
		if m := r.Spec.Migration; m == nil || !m.Live || r.Spec.Host != host {
			continue
		}
		for _, name := range append(append([]string{}, r.Spec.NetworkPorts...), r.Spec.Ports...) {
			in[api.Key{Kind: "port", Project: r.Project, Name: name}] = true
		}
	}
	return in
}

func subnet(name string, ss api.SubnetSpec) (network.Subnet, error) {
	p, err := netip.ParsePrefix(ss.CIDR)
	if err != nil {
		return network.Subnet{}, err
	}
	sub := network.Subnet{ID: name, CIDR: p, DHCP: ss.DHCPEnabled()}
	if gw, err := netip.ParseAddr(ss.Gateway); err == nil {
		sub.Gateway = gw
	}
	for _, r := range ss.AllocationPools {
		lo, err1 := netip.ParseAddr(r.Start)
		hi, err2 := netip.ParseAddr(r.End)
		if err1 == nil && err2 == nil {
			sub.Pools = append(sub.Pools, network.Range{Start: lo, End: hi})
		}
	}
	for _, d := range ss.DNSServers {
		if a, err := netspec.ParseAddr(d); err == nil {
			sub.DNSServers = append(sub.DNSServers, a)
		}
	}
	for _, hr := range ss.HostRoutes {
		dst, err1 := netip.ParsePrefix(hr.Destination)
		nh, err2 := netip.ParseAddr(hr.NextHop)
		if err1 == nil && err2 == nil {
			sub.HostRoutes = append(sub.HostRoutes, network.Route{Dest: dst, NextHop: nh})
		}
	}
	return sub, nil
}

func port(r api.Resource, ps api.PortSpec, netID string) (network.Port, error) {
	mac, err := net.ParseMAC(ps.MAC)
	if err != nil {
		return network.Port{}, fmt.Errorf("mac %q: %w", ps.MAC, err)
	}
	p := network.Port{ID: PortID(r.Project, r.Name), NetworkID: netID, MAC: mac, HostName: ps.DNSName, Host: ps.Host,
		SecurityGroups: contract.PortGroups(r.Project, ps)}
	if ps.Owner == api.PortOwnerDHCP {
		p.Owner = network.OwnerDHCP
	}
	for _, ip := range ps.FixedIPs {
		a, err := netip.ParseAddr(ip.IP)
		if err != nil {
			return network.Port{}, fmt.Errorf("fixed ip %q: %w", ip.IP, err)
		}
		p.IPs = append(p.IPs, a)
	}
	for _, ap := range ps.AllowedAddressPairs {
		pre, hw, err := netspec.ParseAddressPair(ap.IPAddress, ap.MACAddress)
		if err != nil {
			return network.Port{}, fmt.Errorf("allowed address pair: %w", err)
		}
		p.AllowedAddressPairs = append(p.AllowedAddressPairs, network.AddressPair{Prefix: pre, MAC: hw})
	}
	return p, nil
}

// Err joins the problems, sorted by resource, into one error (nil if none).
func (p Problems) Err() error {
	keys := make([]api.Key, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	errs := make([]error, len(keys))
	for i, k := range keys {
		errs[i] = p[k]
	}
	return errors.Join(errs...)
}
