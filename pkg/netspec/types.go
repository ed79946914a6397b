// Package netspec holds the desired state of routers, firewall groups and
// security groups as the coordinator fills it and the agent applies it, with
// the validation both sides run: the coordinator before it commits, the
// agent before it touches the host. It imports nothing host-specific, so the
// coordinator can use it without netlink or nftables.
//
// Only IPv4 is supported for now.
package netspec

import (
	"net"
	"net/netip"
)

// Router is one project router: a namespace on the host the coordinator
// places it on, with a leg on each project subnet it routes and one on the
// external network.
type Router struct {
	ID         string
	Project    string
	Gateway    *Gateway // nil: no external network
	SNAT       bool     // source-NAT to the gateway IP what has no floating IP
	Interfaces []Interface
	Routes     []Route
	// FloatingIPs map external addresses to fixed addresses behind the
	// router (DNAT in, SNAT out).
	FloatingIPs []FloatingIP
	// Firewall is the FWaaS v2 firewall group on some of the router's
	// interfaces; nil means no firewall.
	Firewall *FirewallGroup
}

// Gateway is the router's leg on a flat external network.
type Gateway struct {
	NetworkID string
	Bridge    string       // host bridge of the external network, e.g. "br-ex"
	Addr      netip.Prefix // the router's gateway IP and the external subnet, e.g. 203.0.113.10/24
	NextHop   netip.Addr   // upstream router: the default route; may be invalid (none)
}

// Interface is the router's leg on one project subnet.
type Interface struct {
	ID        string       // the router port's ID
	NetworkID string       // the tenant network; its bridge is where the leg goes
	Addr      netip.Prefix // the router's address and the subnet, e.g. 10.1.1.1/24
	// MAC of the leg inside the router; nil lets the kernel choose. The
	// coordinator gives one so other hosts can hold it in their FDB and
	// neighbour tables like any port's.
	MAC net.HardwareAddr
}

// Route is a static route of a router.
type Route struct {
	Dest    netip.Prefix
	NextHop netip.Addr
}

// FloatingIP associates an external address with a fixed address (a port)
// behind the router.
type FloatingIP struct {
	IP      netip.Addr // on the external subnet
	FixedIP netip.Addr // in one of the router's interface subnets
	PortID  string     // the associated port, for error messages and status
}

// Firewall actions.
const (
	ActionAllow  = "allow"
	ActionDeny   = "deny"   // drop silently
	ActionReject = "reject" // TCP reset, ICMP port unreachable otherwise
)

// Protocols a rule can match; "" matches any.
const (
	ProtoAny  = ""
	ProtoTCP  = "tcp"
	ProtoUDP  = "udp"
	ProtoICMP = "icmp"
)

// FirewallGroup is an FWaaS v2 firewall group: ordered ingress and egress
// policies applied to router interfaces. For an interface in Ports, Ingress
// is what the router forwards out of it into the network behind it, Egress
// what the router receives on it from that network. A nil policy lets
// everything through; a present one ends in an implicit deny.
type FirewallGroup struct {
	ID      string
	Ports   []string // IDs of router interfaces the group applies to
	Ingress *FirewallPolicy
	Egress  *FirewallPolicy
}

// FirewallPolicy is an ordered list of rules: the first that matches wins.
type FirewallPolicy struct {
	ID    string
	Rules []FirewallRule
	// Existing says whether a change of the policy also applies to
	// connections that are already established. When false (neutron's
	// default), established and related packets are accepted before the
	// policy is consulted, so only new connections see a new deny; when
	// true, every packet in a connection's original direction goes through
	// the policy, so a new deny stops an open connection too.
	Existing bool
}

// FirewallRule is one rule of a policy.
type FirewallRule struct {
	ID       string
	Protocol string     // ProtoAny, ProtoTCP, ProtoUDP or ProtoICMP
	Source   string     // CIDR; "" is any
	Dest     string     // CIDR; "" is any
	SrcPorts *PortRange // only with tcp or udp; nil is any
	DstPorts *PortRange
	Action   string // ActionAllow, ActionDeny or ActionReject
}

// PortRange is an inclusive range of TCP or UDP ports, 1..65535.
type PortRange struct {
	From, To int
}

// Directions of a security group rule, as the port sees them.
const (
	Ingress = "ingress"
	Egress  = "egress"
)

// SecurityGroup is a set of stateful allow rules for the ports that belong
// to it. Traffic a port's groups do not allow is dropped; replies of
// allowed connections always pass.
type SecurityGroup struct {
	ID    string
	Rules []SecurityGroupRule
}

// SecurityGroupRule allows one kind of traffic. At most one of RemoteCIDR
// and RemoteGroup is set; neither means any address.
type SecurityGroupRule struct {
	Direction   string // Ingress or Egress
	Protocol    string
	Ports       *PortRange // destination ports; only with tcp or udp
	RemoteCIDR  string     // IPv4 or IPv6
	RemoteGroup string     // ID of a group whose members' addresses match
	// Ethertype (EtherIPv4 or EtherIPv6) limits the rule to one family;
	// empty is RemoteCIDR's family, or both (see Families).
	Ethertype string
}

// Ethertypes of a security group rule (neutron's spelling).
const (
	EtherIPv4 = "IPv4"
	EtherIPv6 = "IPv6"
)

// Families reports which address families a validated rule applies to:
// its ethertype's, else its remote CIDR's, else both.
func (r SecurityGroupRule) Families() (v4, v6 bool) {
	switch r.Ethertype {
	case EtherIPv4:
		return true, false
	case EtherIPv6:
		return false, true
	}
	if p, err := ParseRemoteCIDR(r.RemoteCIDR); err == nil && p.IsValid() {
		return p.Addr().Is4(), p.Addr().Is6()
	}
	return true, true
}

// DefaultSecurityGroup is a project's default group: all egress, and
// ingress from members of the same group.
func DefaultSecurityGroup(id string) SecurityGroup {
	return SecurityGroup{ID: id, Rules: []SecurityGroupRule{
		{Direction: Egress},
		{Direction: Ingress, RemoteGroup: id},
	}}
}
