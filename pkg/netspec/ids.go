package netspec

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"
)

// IDs of resources on hosts. Every name a host derives (nft sets and
// chains, namespaces, links: below) is built from one of these, so they
// are made here and only here: the coordinator validates the same IDs the agent
// applies. An ID is at most MaxIDLen characters and matches the host-side
// ID check (idRE), whatever the lengths of the project and resource names
// the API accepted (each up to 63).

// MaxIDLen is the longest ID a host accepts.
const MaxIDLen = 63

// ResourceID is a project resource's ID on hosts: project.name, or "p" and
// 31 hex digits of its SHA-256 when that is longer than MaxIDLen.
func ResourceID(project, name string) string {
	id := project + "." + name
	if len(id) <= MaxIDLen {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "p" + hex.EncodeToString(sum[:])[:31]
}

// LinkKeyLen is how many hex digits of a hash a link name carries: what
// fits IFNAMSIZ (15 bytes) after a 4-byte prefix.
const LinkKeyLen = MaxLinkName - 4

// LinkKey is what a port's link names (its tap, its endpoint veth) carry
// to tell it from every other port on a host: 11 hex digits of the
// SHA-256 of its ID. Too short to be collision-free by itself, so the
// coordinator refuses a port whose LinkKey another port in any project
// already has: the names derived from it never meet.
func LinkKey(portID string) string {
	sum := sha256.Sum256([]byte(portID))
	return hex.EncodeToString(sum[:])[:LinkKeyLen]
}

// GroupID is a security group's ID on hosts.
func GroupID(project, name string) string { return ResourceID(project, name) }

// NetworkID is a network's ID on hosts: its VNI, which is unique in the
// cluster and never changes, so names built from it are short and stable.
func NetworkID(vni uint32) string { return fmt.Sprintf("n%d", vni) }

// ValidID reports whether id is acceptable as a host-side ID.
func ValidID(id string) bool { return idRE.MatchString(id) }

// ProviderBridgePrefix starts the host bridge of a physical network.
const ProviderBridgePrefix = "sbe-"

// MaxPhysnetLen keeps a provider bridge name within IFNAMSIZ (15 bytes).
const MaxPhysnetLen = MaxLinkName - len(ProviderBridgePrefix)

// ProviderBridge is the host bridge of a physical network, e.g.
// "sbe-physnet1".
func ProviderBridge(physnet string) string { return ProviderBridgePrefix + physnet }

// Names of what hosts make, derived here and only here (from the IDs in
// ids.go) with the kernel's limits beside them: the agent's drivers build
// every link, namespace and nft name through these functions, and the
// coordinator's contract checks the same names for every resource it
// admits (HostNames), so what the API accepts always fits a host.

// Kernel limits of names.
const (
	MaxLinkName  = 15  // a network interface: IFNAMSIZ less the NUL
	MaxNetNSName = 255 // a named namespace: a file under /run/netns (NAME_MAX)
	MaxNFTName   = 255 // an nft table, chain or set: NFT_NAME_MAXLEN less the NUL
	// MaxNetNSPrefix is the longest netns_prefix an agent accepts; names
	// are checked with a prefix this long.
	MaxNetNSPrefix = 32
)

// Link name prefixes. Each link also carries an ownership alias; a link is
// Strata's only when its name and its alias both say so.
const (
	BridgePrefix          = "sbr-" // Linux bridge of a network
	VXLANPrefix           = "svx-" // VXLAN device of a network
	DHCPVethPrefix        = "sdh-" // host side of the veth to a DHCP namespace
	EndpointVethPrefix    = "sep-" // host side of the veth to an endpoint
	TapPrefix             = "stp-" // tap of an instance NIC
	RouterInternalPrefix  = "sri-" // host side of a router's leg into a tenant bridge
	RouterGatewayPrefix   = "srg-" // host side of a router's leg into the external bridge
	RouterInnerInternal   = "qr-"  // router side of an internal leg (in its namespace)
	RouterInnerGateway    = "qg-"  // router side of the gateway leg (in its namespace)
	PatchLinuxPrefix      = "spl-" // ovs hosts: veth end on the network's Linux bridge
	PatchOVSPrefix        = "spo-" // ovs hosts: veth end on the integration bridge
	TunnelVXLANPrefix     = "stv-" // ovs hosts: VXLAN tunnel port to a remote host
	TunnelGREPrefix       = "stg-" // ovs hosts: GRE tunnel port to a remote host
	DHCPNamespacePart     = "dhcp-"
	EndpointNamespacePart = "ep-"
	RouterNamespacePart   = "r-"
	// DHCPIfName is dnsmasq's interface inside its namespace.
	DHCPIfName = "dhcp0"
)

func vniName(prefix string, vni uint32) string { return prefix + strconv.FormatUint(uint64(vni), 10) }

// BridgeName is the bridge of the network with this VNI, e.g. "sbr-5001".
func BridgeName(vni uint32) string { return vniName(BridgePrefix, vni) }

// VXLANName is the VXLAN device of the network with this VNI.
func VXLANName(vni uint32) string { return vniName(VXLANPrefix, vni) }

// DHCPVethName is the host side of the DHCP veth of a network.
func DHCPVethName(vni uint32) string { return vniName(DHCPVethPrefix, vni) }

// PatchLinuxName is the veth end of network vni on its Linux bridge.
func PatchLinuxName(vni uint32) string { return vniName(PatchLinuxPrefix, vni) }

// PatchOVSName is the veth end of network vni on the integration bridge.
func PatchOVSName(vni uint32) string { return vniName(PatchOVSPrefix, vni) }

// TunnelPortName is the OVS port of the tunnel to vtep: TunnelGREPrefix
// for GRE, else TunnelVXLANPrefix, and the IPv4 address in hex, or 11 hex
// digits of a hash of an IPv6 one.
func TunnelPortName(gre bool, vtep netip.Addr) string {
	p := TunnelVXLANPrefix
	if gre {
		p = TunnelGREPrefix
	}
	if vtep.Is4() {
		b := vtep.As4()
		return fmt.Sprintf("%s%02x%02x%02x%02x", p, b[0], b[1], b[2], b[3])
	}
	h := fnv.New64a()
	h.Write(vtep.AsSlice())
	return fmt.Sprintf("%s%011x", p, h.Sum64()&(1<<44-1))
}

// EndpointVethName is the host side of an endpoint's veth: "sep-" and the
// port's LinkKey.
func EndpointVethName(portID string) string { return EndpointVethPrefix + LinkKey(portID) }

// TapName is the tap of an instance NIC: "stp-" and the port's LinkKey.
func TapName(portID string) string { return TapPrefix + LinkKey(portID) }

func hash11(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:11]
}

// RouterInternalLeg is the host side of interface ifID's leg of router id.
func RouterInternalLeg(routerID, ifID string) string {
	return RouterInternalPrefix + hash11(routerID+"/"+ifID)
}

// RouterGatewayLeg is the host side of router id's gateway leg.
func RouterGatewayLeg(routerID string) string { return RouterGatewayPrefix + hash11(routerID) }

// RouterInnerLeg is the name, inside the router's namespace, of the leg of
// interface ifID.
func RouterInnerLeg(ifID string) string { return RouterInnerInternal + hash11(ifID) }

// RouterInnerGatewayLeg is the name, inside the router's namespace, of its
// gateway leg.
func RouterInnerGatewayLeg(routerID string) string { return RouterInnerGateway + hash11(routerID) }

// DHCPNamespacePrefix starts every DHCP namespace of an agent whose
// netns_prefix is prefix.
func DHCPNamespacePrefix(prefix string) string { return prefix + DHCPNamespacePart }

// DHCPNamespace is the namespace of a network's dnsmasq, e.g.
// "strata-dhcp-n5001".
func DHCPNamespace(prefix, networkID string) string { return DHCPNamespacePrefix(prefix) + networkID }

// EndpointNamespacePrefix starts every endpoint namespace of an agent.
func EndpointNamespacePrefix(prefix string) string { return prefix + EndpointNamespacePart }

// EndpointNamespace is the namespace of a port's endpoint.
func EndpointNamespace(prefix, portID string) string { return EndpointNamespacePrefix(prefix) + portID }

// RouterNamespacePrefix starts every router namespace of an agent.
func RouterNamespacePrefix(prefix string) string { return prefix + RouterNamespacePart }

// RouterNamespace is the namespace of a router, e.g. "strata-r-demo.rt".
func RouterNamespace(prefix, routerID string) string { return RouterNamespacePrefix(prefix) + routerID }

// Security group nft names: a set of member addresses per group, two
// chains per filtered port. They carry the whole SHA-256 of the ID (nft
// names take 255 bytes): with a short hash, a tenant could search offline
// for a port or group name whose chain or set is another project's, and
// the two would be one object on the host.
func hashFull(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// GroupSetName is the nft set of security group id's member addresses
// (intervals: a member may be an allowed pair's CIDR). The prefix changed
// from "g_" when the set became one of intervals, as nftsync needs a set
// whose kind changes to change its name (the hash's length changed since).
func GroupSetName(groupID string) string { return "gm_" + hashFull(groupID) }

// GroupSet6Name is the nft set of security group id's IPv6 member
// addresses (intervals).
func GroupSet6Name(groupID string) string { return "gm6_" + hashFull(groupID) }

// PortSecurityChain is the bridge-family chain checking the sources of
// what port id sends (MAC, ARP, IPv4 and IPv6 sources).
func PortSecurityChain(portID string) string { return "s_" + hashFull(portID) }

// PortNDChain is the bridge-family chain checking the target address of
// the neighbour advertisements port id sends.
func PortNDChain(portID string) string { return "n_" + hashFull(portID) }

// PortEgressChain is the nft chain of what port id sends.
func PortEgressChain(portID string) string { return "o_" + hashFull(portID) }

// PortIngressChain is the nft chain of what port id receives.
func PortIngressChain(portID string) string { return "i_" + hashFull(portID) }

// NameKind is what kind of kernel object a name names.
type NameKind string

// The kinds of names, each with its limit.
const (
	LinkName  NameKind = "link"
	NetNSName NameKind = "network namespace"
	NFTName   NameKind = "nft object"
)

// Limit is the longest name of kind k.
func (k NameKind) Limit() int {
	switch k {
	case LinkName:
		return MaxLinkName
	case NetNSName:
		return MaxNetNSName
	}
	return MaxNFTName
}

// Name is one name a host derives.
type Name struct {
	Kind  NameKind
	Value string
}

// Check says whether the name fits its kind's limit.
func (n Name) Check() error {
	if n.Value == "" || len(n.Value) > n.Kind.Limit() {
		return fmt.Errorf("%s name %q is %d bytes; a host takes 1..%d", n.Kind, n.Value, len(n.Value), n.Kind.Limit())
	}
	return nil
}

// longestPrefix stands for any agent's netns_prefix in HostNames.
var longestPrefix = string(make([]byte, MaxNetNSPrefix))

// NetworkNames are the names a host derives for a network.
func NetworkNames(vni uint32) []Name {
	return []Name{{LinkName, BridgeName(vni)}, {LinkName, VXLANName(vni)}, {LinkName, DHCPVethName(vni)},
		{LinkName, PatchLinuxName(vni)}, {LinkName, PatchOVSName(vni)}, {NetNSName, DHCPNamespace(longestPrefix, NetworkID(vni))}}
}

// PortNames are the names a host derives for a port.
func PortNames(portID string) []Name {
	return []Name{{LinkName, EndpointVethName(portID)}, {LinkName, TapName(portID)},
		{NetNSName, EndpointNamespace(longestPrefix, portID)},
		{NFTName, PortEgressChain(portID)}, {NFTName, PortIngressChain(portID)}, {NFTName, PortSecurityChain(portID)},
		{NFTName, PortNDChain(portID)}}
}

// RouterNames are the names a host derives for a router with interfaces
// ifIDs.
func RouterNames(routerID string, ifIDs []string) []Name {
	out := []Name{{NetNSName, RouterNamespace(longestPrefix, routerID)},
		{LinkName, RouterGatewayLeg(routerID)}, {LinkName, RouterInnerGatewayLeg(routerID)}}
	for _, in := range ifIDs {
		out = append(out, Name{LinkName, RouterInternalLeg(routerID, in)}, Name{LinkName, RouterInnerLeg(in)})
	}
	return out
}

// GroupNames are the names a host derives for a security group.
func GroupNames(groupID string) []Name {
	return []Name{{NFTName, GroupSetName(groupID)}, {NFTName, GroupSet6Name(groupID)}}
}

// PhysnetNames are the names a host derives for a physical network.
func PhysnetNames(physnet string) []Name { return []Name{{LinkName, ProviderBridge(physnet)}} }

// CheckNames returns the first name that does not fit, or nil.
func CheckNames(names []Name) error {
	for _, n := range names {
		if err := n.Check(); err != nil {
			return err
		}
	}
	return nil
}
