package router

import "github.com/strata-infra/strata/pkg/netspec"

// Names of what the driver makes, derived in pkg/netspec (ids.go) beside
// the kernel's limits. Host-side legs carry the alias strata:router:<id>
// and are Strata's only when name and alias both say so.
const (
	// DefaultNSPrefix starts router namespaces when Config.NSPrefix is
	// empty: netspec.RouterNamespacePrefix of the default netns_prefix.
	DefaultNSPrefix    = "strata-" + netspec.RouterNamespacePart
	HostInternalPrefix = netspec.RouterInternalPrefix // host side of a leg into a tenant bridge
	HostGatewayPrefix  = netspec.RouterGatewayPrefix  // host side of the leg into the external bridge
)

// InternalLeg is the name, inside the router namespace, of the leg of
// interface ifID.
func InternalLeg(ifID string) string { return netspec.RouterInnerLeg(ifID) }

// GatewayLeg is the name, inside the router namespace, of the gateway leg.
func GatewayLeg(routerID string) string { return netspec.RouterInnerGatewayLeg(routerID) }

// HostInternalLeg is the host side of interface ifID's leg of router id.
func HostInternalLeg(id, ifID string) string { return netspec.RouterInternalLeg(id, ifID) }

// HostGatewayLeg is the host side of router id's gateway leg.
func HostGatewayLeg(id string) string { return netspec.RouterGatewayLeg(id) }
