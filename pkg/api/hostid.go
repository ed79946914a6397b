package api

import (
	"crypto/sha256"
	"encoding/hex"
)

// HostIDNameLen is how much of a resource's name starts its host ID.
const HostIDNameLen = 15

// MaxHostIDLen is the longest ID HostID returns.
const MaxHostIDLen = HostIDNameLen + 1 + 2*sha256.Size

// HostID is the identifier a host derives for a project's resource where
// the name has room (libvirt domains, state directories, RBD images): the
// name's first HostIDNameLen characters, for people, and the full SHA-256
// of project and name, so that two resources of any two projects never
// share one. Both are DNS labels, so "project/name" is unambiguous.
//
// Names bounded by IFNAMSIZ cannot carry a full hash; their uniqueness is
// checked by the coordinator instead (netspec.LinkKey).
func HostID(project, name string) string {
	sum := sha256.Sum256([]byte(project + "/" + name))
	if len(name) > HostIDNameLen {
		name = name[:HostIDNameLen]
	}
	return name + "-" + hex.EncodeToString(sum[:])
}
