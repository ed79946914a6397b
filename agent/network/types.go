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
	"errors"
	"fmt"
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

// Network is one tenant L2 network, carried over VXLAN or GRE.
type Network struct {
	ID  string
	VNI uint32 // 1..16777215: the VXLAN ID or GRE key
	// Type is the overlay: TypeVXLAN ("" means VXLAN too) or TypeGRE.
	// Only the ovs driver carries GRE.
	Type    string
	MTU     int // tenant MTU; 0 means DefaultMTU
	Subnets []Subnet
	// L2 is where this network's ports plug in on the host, filled by the
	// host's L2 driver (Bind) before any other driver sees the state:
	// DHCP, endpoints, router legs and security groups read it and never
	// name a bridge themselves.
	L2 L2Binding
}

// L2Binding is where a port of a network plugs in on this host: the
// switch a tap or veth is attached to, and what kind of switch it is.
type L2Binding struct {
	Bridge string
	Type   L2Type
	// Filtered is the Linux bridge where the network's ports with
	// security groups plug in, and where their nftables filter matches
	// them: Bridge itself on a Linux bridge host; "" on an Open vSwitch
	// host, where they plug into Bridge and the L2 driver's flows filter
	// them.
	Filtered string
	// Plug adds a link to Bridge when Type is L2OpenVSwitch (nil
	// otherwise): the host's Open vSwitch driver.
	Plug Plugger
	// FullChecksums says an instance's NIC must put complete checksums
	// on what it sends: Open vSwitch's userspace datapath switches and
	// tracks (conntrack) packets as they are and takes a checksum the
	// guest left for the host to finish as bad.
	FullChecksums bool
}

// Plugger plugs a host-side link into an Open vSwitch integration bridge
// as a port of a network, on the network's local VLAN.
type Plugger interface {
	PlugPort(ctx context.Context, p OVSPort) error
}

// OVSPort is one link to plug into the integration bridge.
type OVSPort struct {
	Link string // the link's name in the host's namespace
	VNI  uint32 // its network
	// MACs are the addresses behind the link (the port's MAC), for
	// unicast flows; other destinations are flooded on the network.
	MACs []net.HardwareAddr
	// NetNS and IfName are the far end of a veth (a DHCP, router or
	// endpoint namespace); Created says the veth was just made, so the
	// userspace datapath's checksum setting is applied to it once.
	NetNS, IfName string
	Created       bool
}

// Filtered reports whether the port has security groups: it plugs into
// its network's Filtered bridge.
func (p Port) Filtered() bool { return len(p.SecurityGroups) > 0 }

// PortBinding is where port p of network n plugs in: the Filtered
// bridge, as a Linux bridge port, when p has security groups.
func (n Network) PortBinding(p Port) L2Binding { return n.L2.ForPort(p.Filtered()) }

// ForPort is where a port plugs in: b itself, or b's Filtered bridge, as a
// Linux bridge port, when the port has security groups.
func (b L2Binding) ForPort(filtered bool) L2Binding {
	if filtered && b.Filtered != "" && b.Filtered != b.Bridge {
		return L2Binding{Bridge: b.Filtered, Type: L2LinuxBridge, Filtered: b.Filtered}
	}
	return b
}

// FilterBridge is the bridge where the network's filtered ports are
// matched by the security group table; "" on an Open vSwitch host,
// whose L2 driver filters them itself.
func (n Network) FilterBridge() string {
	if n.L2.Filtered != "" || n.L2.Type == L2OpenVSwitch {
		return n.L2.Filtered
	}
	return n.L2.Bridge
}

// L2Type is the kind of switch a network's ports plug into.
type L2Type string

// The L2 drivers' switches.
const (
	L2LinuxBridge L2Type = "linuxbridge" // a Linux bridge: ports are enslaved to it by netlink
	L2OpenVSwitch L2Type = "openvswitch" // an OVS bridge: ports are added through OVSDB; libvirt's <virtualport type='openvswitch'/>
)

// L2 is the host's L2 driver: it makes each network's switch and tunnels
// (Set), and says where the network's ports plug in (Binding). Linux
// bridge + VXLAN is one; Open vSwitch is another.
type L2 interface {
	Driver
	// Binding is where the ports of n plug in on this host. It is pure: it
	// depends on n alone, so it can be asked before or after Set.
	Binding(n Network) L2Binding
}

// Bind fills every network's L2 binding from the host's L2 driver.
func Bind(st *HostState, l2 L2) {
	for i := range st.Networks {
		st.Networks[i].L2 = l2.Binding(st.Networks[i])
	}
}

// Bridge is the switch the network's ports plug into, or an error naming
// the network when no L2 driver has bound it.
func (n Network) Bridge() (string, error) {
	if n.L2.Bridge == "" {
		return "", fmt.Errorf("network %q has no L2 binding", n.ID)
	}
	return n.L2.Bridge, nil
}

// Network types (the API's spec.type).
const (
	TypeVXLAN = "vxlan"
	TypeGRE   = "gre"
)

// IsGRE reports whether the network is carried over GRE.
func (n Network) IsGRE() bool { return n.Type == TypeGRE }

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
	// From is, on the destination of a live migration, the source host
	// while the port moves here: the port is this host's already (its
	// filter in force before the guest arrives), and the network's flood
	// still reaches the source, where the guest runs until it resumes here.
	From  string
	Owner string // "" for an instance port, OwnerDHCP for a DHCP port
	// SecurityGroups the port belongs to; none means no port security
	// (nothing filtered), as neutron's port_security_enabled=false.
	SecurityGroups []string
	// AllowedAddressPairs are the other sources the port may send from
	// (a VRRP address, a router VM's networks), each with the port's MAC
	// unless one is given; traffic to them goes through the port's groups.
	AllowedAddressPairs []AddressPair
}

// AddressPair is one allowed address pair of a port.
type AddressPair struct {
	Prefix netip.Prefix
	MAC    net.HardwareAddr // nil: the port's MAC
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
	// Hold names resources (HoldKey: the kind and ID of a ResourceError)
	// that drivers leave as they are this pass: neither made, changed nor
	// removed, and no error returned for them. The agent holds a resource
	// that waits for its retry after a failure, and an endpoint whose
	// security groups are not in force (it is not plugged: fail closed).
	// The router, endpoint and DHCP drivers honour it.
	Hold map[string]bool
}

// HoldKey is a resource's key in HostState.Hold.
func HoldKey(kind, id string) string { return kind + "/" + id }

// Held reports whether st holds resource kind/id.
func (st HostState) Held(kind, id string) bool { return st.Hold[HoldKey(kind, id)] }

// Multi runs drivers in order: put the one making bridges first.
type Multi []Driver

// Set calls Set on every driver in order and joins their errors: one
// failing driver (a router this host refuses) never stops the others (the
// security groups behind it).
func (m Multi) Set(ctx context.Context, st HostState) error {
	var errs []error
	for _, d := range m {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		errs = append(errs, d.Set(ctx, st))
	}
	return errors.Join(errs...)
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

// ResourceError is the failure of one resource on the host. Drivers wrap a
// per-resource failure in it and go on with the rest, so the agent reports
// the failure against its own resource and retries it, while everything
// else converges.
type ResourceError struct {
	Kind string // "router", "securitygroup", "port", "network"
	ID   string // the resource's ID on hosts (Router.ID, SecurityGroup.ID, Port.ID, Network.ID)
	Err  error
}

func (e *ResourceError) Error() string { return fmt.Sprintf("%s %q: %v", e.Kind, e.ID, e.Err) }
func (e *ResourceError) Unwrap() error { return e.Err }

// ResourceErrors returns every ResourceError in err, through wrapping and
// errors.Join.
func ResourceErrors(err error) []*ResourceError {
	var out []*ResourceError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *ResourceError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}
