package router

import (
	"crypto/sha256"
	"encoding/hex"
)

// Names of what the driver makes. Link names fit IFNAMSIZ (15 bytes).
// Host-side legs carry the alias strata:router:<id> and are Strata's only
// when name and alias both say so.
const (
	DefaultNSPrefix    = "strata-r-" // a router's namespace is the prefix and its ID
	HostInternalPrefix = "sri-"      // host side of a leg into a tenant bridge
	HostGatewayPrefix  = "srg-"      // host side of the leg into the external bridge
	innerInternal      = "qr-"       // router side of an internal leg
	innerGateway       = "qg-"       // router side of the gateway leg
)

func hash11(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:11]
}

// InternalLeg is the name, inside the router namespace, of the leg of
// interface ifID: "qr-" and 11 hex digits.
func InternalLeg(ifID string) string { return innerInternal + hash11(ifID) }

// GatewayLeg is the name, inside the router namespace, of the gateway leg.
func GatewayLeg(routerID string) string { return innerGateway + hash11(routerID) }

// HostInternalLeg is the host side of interface ifID's leg of router id.
func HostInternalLeg(id, ifID string) string { return HostInternalPrefix + hash11(id+"/"+ifID) }

// HostGatewayLeg is the host side of router id's gateway leg.
func HostGatewayLeg(id string) string { return HostGatewayPrefix + hash11(id) }
