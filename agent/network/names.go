package network

import (
	"strconv"
	"strings"

	"github.com/strata-infra/strata/pkg/netspec"
)

// Names of what Strata makes on a host, all derived in pkg/netspec (ids.go)
// beside the kernel's limits, where the coordinator's contract checks them
// too. Each link also carries an alias starting with AliasPrefix; a link is
// Strata's only when both its name and its alias say so, and nothing else
// is ever changed or deleted.
const (
	BridgePrefix       = netspec.BridgePrefix         // Linux bridge of a network
	VXLANPrefix        = netspec.VXLANPrefix          // VXLAN device of a network
	DHCPVethPrefix     = netspec.DHCPVethPrefix       // host side of the veth to a DHCP namespace
	EndpointVethPrefix = netspec.EndpointVethPrefix   // host side of the veth to an endpoint
	ProviderPrefix     = netspec.ProviderBridgePrefix // bridge of a flat provider (external) network
	AliasPrefix        = "strata:"
	DHCPNamespacePart  = netspec.DHCPNamespacePart     // after the agent's namespace prefix
	EndpointNSPart     = netspec.EndpointNamespacePart // after the agent's namespace prefix
	DHCPIfName         = netspec.DHCPIfName            // dnsmasq's interface inside its namespace
)

// BridgeName is the bridge of the network with this VNI, e.g. "sbr-5001".
func BridgeName(vni uint32) string { return netspec.BridgeName(vni) }

// VXLANName is the VXLAN device of the network with this VNI, e.g. "svx-5001".
func VXLANName(vni uint32) string { return netspec.VXLANName(vni) }

// ProviderBridgeName is the bridge of a physical network, e.g. "sbe-physnet1".
func ProviderBridgeName(physnet string) string { return netspec.ProviderBridge(physnet) }

// DHCPVethName is the host side of the DHCP veth of a network, e.g. "sdh-5001".
func DHCPVethName(vni uint32) string { return netspec.DHCPVethName(vni) }

// EndpointVethName is the host side of an endpoint's veth: "sep-" and the
// port's netspec.LinkKey, unique in the cluster.
func EndpointVethName(portID string) string { return netspec.EndpointVethName(portID) }

// DHCPNamespace is the namespace of a network's dnsmasq, e.g.
// "strata-h1-dhcp-net-a".
func DHCPNamespace(prefix, networkID string) string {
	return netspec.DHCPNamespace(prefix, networkID)
}

// Alias is the ownership tag a Strata link carries.
func Alias(kind, id string) string { return AliasPrefix + kind + ":" + id }

// VNIFromName returns the VNI in a bridge, VXLAN or DHCP veth name made by
// this package, and whether name is one.
func VNIFromName(name, prefix string) (uint32, bool) {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || rest == "" || (len(rest) > 1 && rest[0] == '0') {
		return 0, false
	}
	v, err := strconv.ParseUint(rest, 10, 32)
	if err != nil || v == 0 || v > MaxVNI {
		return 0, false
	}
	return uint32(v), true
}

// MaxVNI is the largest 24-bit VXLAN network identifier.
const MaxVNI = 1<<24 - 1
