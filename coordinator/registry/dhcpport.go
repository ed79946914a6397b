package registry

import (
	"encoding/json"
	"errors"
	"hash/fnv"
	"net/netip"
	"sort"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// syncDHCPPort keeps the network's DHCP port in step with one subnet: an
// address in it while the subnet serves DHCP, none otherwise. The port is
// made with the first DHCP subnet (placed on the network's dhcp_host, or on
// an alive agent chosen by a hash of the network) and removed with the last.
func syncDHCPPort(a *Admission, project, network, subnet string, s api.SubnetSpec, p netip.Prefix, gw netip.Addr) error {
	key := api.Key{Kind: "port", Project: project, Name: api.DHCPPortName(network)}
	cur, err := a.Tx.Get(key)
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	ps := decode[api.PortSpec](cur)
	var ips []api.FixedIP
	has := false
	for _, ip := range ps.FixedIPs {
		if ip.Subnet == subnet {
			has = true
			if !s.DHCPEnabled() {
				continue
			}
		}
		ips = append(ips, ip)
	}
	switch {
	case s.DHCPEnabled() && has:
		return nil
	case !s.DHCPEnabled() && !has:
		return nil
	case !s.DHCPEnabled() && len(ips) == 0:
		_, err := a.Tx.Delete(key)
		return err
	case s.DHCPEnabled():
		used, err := usedAddrs(a, project, network)
		if err != nil {
			return err
		}
		ip, err := allocate(s.AllocationPools, used, gw)
		if err != nil {
			return Conflictf("subnet %q: no address left for its DHCP server", subnet)
		}
		ips = append(ips, api.FixedIP{Subnet: subnet, IP: ip.String()})
	}
	if !exists {
		host, err := dhcpHost(a, project, network)
		if err != nil {
			return err
		}
		ps = api.PortSpec{Network: network, MAC: newMAC(), Host: host, Owner: api.PortOwnerDHCP, DNSName: "dhcp"}
	}
	ps.FixedIPs = ips
	buf, err := json.Marshal(ps)
	if err != nil {
		return err
	}
	_, _, err = a.Tx.Put(api.Resource{Kind: "port", Project: project, Name: key.Name, Spec: buf})
	return err
}

// dhcpHost returns the network's dhcp_host, choosing and recording one
// among the alive agents when it has none.
func dhcpHost(a *Admission, project, network string) (string, error) {
	n, ns, err := getNetwork(a.Tx, project, network, "spec.network")
	if err != nil {
		return "", err
	}
	if ns.DHCPHost != "" {
		return ns.DHCPHost, nil
	}
	if ns.DHCPHost, err = pickDHCPHost(a, project, network, ns); err != nil {
		return "", err
	}
	buf, err := json.Marshal(ns)
	if err != nil {
		return "", err
	}
	n.Spec = buf
	if _, _, err := a.Tx.Put(n); err != nil {
		return "", err
	}
	return ns.DHCPHost, nil
}

// pickDHCPHost chooses the host to run a network's DHCP on among the alive
// agents, by a hash of the network (never the host being evacuated).
func pickDHCPHost(a *Admission, project, network string, ns api.NetworkSpec) (string, error) {
	var alive []string
	for _, h := range a.Hosts() {
		// A gre network's DHCP goes only to a host that can carry it.
		if h.State == api.StateAlive && !h.Drained && h.Name != a.Evacuate && (ns.Type != "gre" || a.Facts.CarriesGRE(h.Name)) {
			alive = append(alive, h.Name)
		}
	}
	if len(alive) == 0 {
		return "", Conflictf("no alive host to run DHCP for network %q; start an agent or set spec.dhcp_host on the network", network)
	}
	sort.Strings(alive)
	h := fnv.New32a()
	h.Write([]byte(project + "/" + network))
	return alive[int(h.Sum32()%uint32(len(alive)))], nil
}

// moveDHCPPort binds the network's DHCP port (if it has one) to host: the
// DHCP server moves with its MAC and addresses, so leases renew as before.
func moveDHCPPort(a *Admission, project, network, host string) error {
	key := api.Key{Kind: "port", Project: project, Name: api.DHCPPortName(network)}
	cur, err := a.Tx.Get(key)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	ps := decode[api.PortSpec](cur)
	if ps.Host == host {
		return nil
	}
	ps.Host = host
	return putSpec(a.Tx, cur, &ps)
}

// usedAddrs is every address taken in the network, by any port.
func usedAddrs(a *Admission, project, network string) (map[netip.Addr]bool, error) {
	ports, err := portsOf(a, project, network)
	if err != nil {
		return nil, err
	}
	used := map[netip.Addr]bool{}
	for _, p := range ports {
		for _, ip := range decode[api.PortSpec](p).FixedIPs {
			if addr, err := netip.ParseAddr(ip.IP); err == nil {
				used[addr] = true
			}
		}
	}
	return used, nil
}
