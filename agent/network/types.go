// Package network holds the desired state of a host's tenant networks and the
// door every host-side network driver stands behind.
//
// The coordinator fills a HostState per host; the agent hands it to Set on
// each driver (linuxbridge for bridges, VXLAN and l2population; endpoint for
// test namespaces and later VM taps; dhcp for dnsmasq). Set is idempotent and
// level-triggered: it reads what is on the host and converges.
package network

import (
	"context"
	"net"
	"net/netip"

	"github.com/strata-infra/strata/pkg/netspec"
)

// Driver is the door of a host network subsystem.
type Driver interface {
	// Set converges the host to st. Calling it again with the same state
	// changes nothing, also from a fresh process (agent restart).
	Set(ctx context.Context, st HostState) error
	// Close releases the driver's handles and goroutines. It leaves the data
	// plane as it is: devices, FDB entries and dnsmasq keep running.
	Close() error
}

// OwnerDHCP is the Port.Owner of a network's DHCP port. The host a DHCP port
// is bound to runs that network's dnsmasq, with the port's MAC and addresses.
const OwnerDHCP = "network:dhcp"

// Network is one tenant L2 network, carried over VXLAN.
type Network struct {
	ID      string
	VNI     uint32 // 1..16777215
	MTU     int    // tenant MTU; 0 means DefaultMTU
	Subnets []Subnet
}

// DefaultMTU is a 1500-byte underlay less the 50 bytes of VXLAN over IPv4.
const DefaultMTU = 1450

// Subnet is one IP subnet of a network.
type Subnet struct {
	ID         string
	CIDR       netip.Prefix
	Gateway    netip.Addr // router option handed out by DHCP; may be invalid (none)
	Pools      []Range    // dynamic DHCP ranges; ports always get their fixed IPs
	DNSServers []netip.Addr
	HostRoutes []Route
	DHCP       bool
}

// Range is an inclusive address range.
type Range struct {
	Start, End netip.Addr
}

// Route is a static route handed out by DHCP (option 121).
type Route struct {
	Dest    netip.Prefix
	NextHop netip.Addr
}

// Port is one port (NIC) on a network, local or remote.
type Port struct {
	ID        string
	NetworkID string
	MAC       net.HardwareAddr
	IPs       []netip.Addr
	HostName  string // DNS name handed out by DHCP; may be empty
	Host      string // binding host: the gossip name of the host the port lives on
	Owner     string // "" for an instance port, OwnerDHCP for a DHCP port
	// SecurityGroups the port belongs to; none means no port security
	// (nothing filtered), as neutron's port_security_enabled=false.
	SecurityGroups []string
}

// Endpoint plugs a local port into its network: a veth whose host side is on
// the network's bridge and whose other side, named IfName with the port's
// MAC, sits in namespace Namespace. Tests use them as instances; a VM tap is
// the same thing later.
type Endpoint struct {
	PortID    string
	Namespace string // must start with the driver's namespace prefix
	IfName    string // name inside the namespace, e.g. "eth0"
	MAC       net.HardwareAddr
	Addr      netip.Prefix // static address; invalid when the endpoint uses DHCP
	DHCP      bool         // the endpoint's address comes from DHCP (run by its user)
}

// HostState is everything one host needs to know about tenant networks.
type HostState struct {
	Host        string     // this host's gossip name (matches Port.Host)
	LocalVTEP   netip.Addr // this host's tunnel source address
	UnderlayDev string     // device the tunnels use; "" lets routing decide
	// Networks present on this host.
	Networks []Network
	// Ports of those networks, local and remote.
	Ports []Port
	// RemoteVTEPs maps every live remote host (from gossip membership) to its
	// tunnel address. A host missing here gets no tunnel entries.
	RemoteVTEPs    map[string]netip.Addr
	LocalEndpoints []Endpoint
	// Routers placed on this host (router driver).
	Routers []netspec.Router
	// SecurityGroups referenced by ports, local or remote (secgroup driver).
	SecurityGroups []netspec.SecurityGroup
}

// Multi runs drivers in order: put the one making bridges first.
type Multi []Driver

// Set calls Set on every driver in order, stopping at the first error.
func (m Multi) Set(ctx context.Context, st HostState) error {
	for _, d := range m {
		if err := d.Set(ctx, st); err != nil {
			return err
		}
	}
	return nil
}

// Close closes every driver and returns the first error.
func (m Multi) Close() error {
	var first error
	for _, d := range m {
		if err := d.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
