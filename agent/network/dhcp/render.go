package dhcp

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/strata-infra/strata/agent/network"
)

// Files of one network's dnsmasq, under <StateDir>/<network ID>/.
const (
	pidFile    = "pid"
	leaseFile  = "leases"
	hostsFile  = "host"       // --dhcp-hostsfile: MAC -> fixed IP, name
	addnHosts  = "addn_hosts" // --addn-hosts: DNS names of the ports
	optsFile   = "opts"       // --dhcp-optsfile: router, DNS, routes, MTU
	logFile    = "log"
	stderrFile = "stderr"
	leaseTime  = "86400s"
)

// Args is dnsmasq's command line for network n served from dir. Subnets and
// the interface are on the command line (a change restarts dnsmasq); ports,
// names and options are in files dnsmasq rereads on SIGHUP.
//
// Ranges are "static": only ports of the plan get addresses, as in neutron;
// Subnet.Pools are the coordinator's IPAM business. IPv6 subnets get
// stateful DHCPv6 in static mode with router advertisements (managed flag)
// from dnsmasq.
//
// dnsmasq drops to user and group once its sockets and files are open.
func Args(n network.Network, dir, domain, user, group string) []string {
	p := func(f string) string { return filepath.Join(dir, f) }
	args := []string{
		"--conf-file=/dev/null", "--no-hosts", "--no-resolv", "--keep-in-foreground",
		"--user=" + user, "--group=" + group,
		"--pid-file=" + p(pidFile), "--dhcp-leasefile=" + p(leaseFile),
		"--dhcp-hostsfile=" + p(hostsFile), "--addn-hosts=" + p(addnHosts),
		"--dhcp-optsfile=" + p(optsFile), "--log-facility=" + p(logFile),
		"--interface=" + network.DHCPIfName, "--bind-interfaces", "--except-interface=lo",
		"--dhcp-authoritative", "--domain=" + domain, "--local=/" + domain + "/",
	}
	v6 := false
	for _, s := range dhcpSubnets(n) {
		addr := s.CIDR.Addr().String()
		if s.CIDR.Addr().Is4() {
			mask := net.IP(net.CIDRMask(s.CIDR.Bits(), 32)).String()
			args = append(args, fmt.Sprintf("--dhcp-range=set:%s,%s,static,%s,%s", tag(s), addr, mask, leaseTime))
		} else {
			v6 = true
			args = append(args, fmt.Sprintf("--dhcp-range=set:%s,%s,static,%d,%s", tag(s), addr, s.CIDR.Bits(), leaseTime))
		}
	}
	if v6 {
		args = append(args, "--enable-ra")
	}
	return args
}

func tag(s network.Subnet) string { return "subnet-" + s.ID }

func dhcpSubnets(n network.Network) []network.Subnet {
	var out []network.Subnet
	for _, s := range n.Subnets {
		if s.DHCP {
			out = append(out, s)
		}
	}
	return out
}

// subnetOf returns the DHCP subnet of n that holds ip.
func subnetOf(n network.Network, ip netip.Addr) (network.Subnet, bool) {
	for _, s := range dhcpSubnets(n) {
		if s.CIDR.Contains(ip) {
			return s, true
		}
	}
	return network.Subnet{}, false
}

// HostName is the DNS name of a port: its HostName, else "host-" and its
// first address with dashes, as neutron does.
func HostName(p network.Port) string {
	if p.HostName != "" {
		return p.HostName
	}
	if len(p.IPs) == 0 {
		return "port-" + p.ID
	}
	r := strings.NewReplacer(".", "-", ":", "-")
	return "host-" + r.Replace(p.IPs[0].String())
}

// HostsFile renders --dhcp-hostsfile: one line per port and DHCP subnet,
// with the port's first address in that subnet, sorted. Only the first:
// dnsmasq, given two lines for one MAC in one subnet, hands out either
// (a guest whose port had two addresses took the second).
func HostsFile(n network.Network, ports []network.Port) string {
	var lines []string
	for _, p := range ports {
		seen := map[string]bool{}
		for _, ip := range p.IPs {
			s, ok := subnetOf(n, ip)
			if !ok || seen[s.ID] {
				continue
			}
			seen[s.ID] = true
			a := ip.String()
			if ip.Is6() {
				a = "[" + a + "]"
			}
			lines = append(lines, fmt.Sprintf("%s,%s,%s", p.MAC, a, HostName(p)))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// AddnHosts renders --addn-hosts: the DNS names of the ports.
func AddnHosts(n network.Network, ports []network.Port, domain string) string {
	var lines []string
	for _, p := range ports {
		for _, ip := range p.IPs {
			if _, ok := subnetOf(n, ip); ok {
				name := HostName(p)
				lines = append(lines, fmt.Sprintf("%s\t%s.%s %s", ip, name, domain, name))
			}
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// OptsFile renders --dhcp-optsfile: per subnet the router (or none), DNS
// servers, host routes (option 121, with the default route added as RFC 3442
// asks) and the network MTU.
func OptsFile(n network.Network, mtu int) string {
	var lines []string
	for _, s := range dhcpSubnets(n) {
		t := "tag:" + tag(s)
		if s.CIDR.Addr().Is6() {
			if len(s.DNSServers) > 0 {
				lines = append(lines, t+",option6:dns-server,"+joinAddrs(s.DNSServers, true))
			}
			continue
		}
		router := t + ",option:router"
		if s.Gateway.IsValid() {
			router += "," + s.Gateway.String()
		}
		lines = append(lines, router)
		if len(s.DNSServers) > 0 {
			lines = append(lines, t+",option:dns-server,"+joinAddrs(s.DNSServers, false))
		}
		if len(s.HostRoutes) > 0 {
			lines = append(lines, t+",option:classless-static-route,"+routes(s))
		}
		lines = append(lines, t+",option:mtu,"+strconv.Itoa(mtu))
	}
	return strings.Join(lines, "\n") + "\n"
}

func joinAddrs(as []netip.Addr, brackets bool) string {
	var ss []string
	for _, a := range as {
		if brackets {
			ss = append(ss, "["+a.String()+"]")
		} else {
			ss = append(ss, a.String())
		}
	}
	return strings.Join(ss, ",")
}

func routes(s network.Subnet) string {
	var parts []string
	for _, r := range s.HostRoutes {
		parts = append(parts, r.Dest.String()+","+r.NextHop.String())
	}
	if s.Gateway.IsValid() {
		parts = append(parts, "0.0.0.0/0,"+s.Gateway.String())
	}
	return strings.Join(parts, ",")
}
