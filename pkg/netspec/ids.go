package netspec

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// IDs of resources on hosts. Every name a host derives (nft sets and
// chains, namespaces, links) is built from one of these, so they are made
// here and only here: the coordinator validates the same IDs the agent
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
const LinkKeyLen = 11

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
const MaxPhysnetLen = 15 - len(ProviderBridgePrefix)

// ProviderBridge is the host bridge of a physical network, e.g.
// "sbe-physnet1".
func ProviderBridge(physnet string) string { return ProviderBridgePrefix + physnet }
