package api

import "time"

// FenceSpec is the spec of kind "fence" (admin, global), written by the
// coordinator's recovery controller when gossip has declared a host dead
// for longer than the grace: the active storage controller puts the host's
// Ceph client addresses on the OSD blocklist (with Expiry, renewed while
// the fence holds) and breaks the RBD locks they hold, then reports the
// fence "fenced". Nothing of the host's is rebuilt elsewhere before that
// status is recorded. Fences stay as the history of what was fenced when, until a released one
// is older than the coordinator's fence_retention.
type FenceSpec struct {
	// Host is the fenced host.
	Host string `json:"host"`
	// Addrs are the host's Ceph client addresses: an IP (every client of
	// that address, qemu's included) or one client's ip:port/nonce.
	Addrs []string `json:"addrs"`
	// ExpirySeconds is how long a blocklist entry lasts unless renewed;
	// the controller renews it while the fence holds, so that a host that
	// stays away never gets back in by expiry alone.
	ExpirySeconds int `json:"expiry_seconds"`
	// Reason says why the host was fenced ("dead since ...").
	Reason string `json:"reason,omitempty"`
	// DeadSince is when gossip declared the host dead.
	DeadSince time.Time `json:"dead_since"`
	// Released is set once the host came back clean (alive, its old
	// domains removed): the controller removes the blocklist entries.
	Released bool `json:"released,omitempty"`
	// ReleasedAt is when the coordinator released the fence; a released
	// fence is pruned once it is older than the coordinator's
	// fence_retention.
	ReleasedAt time.Time `json:"released_at,omitzero"`
}

// Fence states in a fence's status.
const (
	FenceFenced   = "fenced"
	FenceReleased = "released"
)

// FenceDetail is the Detail of a fence's status as the active storage
// controller applied it.
type FenceDetail struct {
	Blocklisted []string  `json:"blocklisted,omitempty"`  // addresses on the OSD blocklist
	Expires     time.Time `json:"expires,omitzero"`       // when the entries lapse unless renewed
	BrokenLocks []string  `json:"broken_locks,omitempty"` // pool/image: owner, broken
	FencedAt    time.Time `json:"fenced_at,omitzero"`     // first recorded
	ReleasedAt  time.Time `json:"released_at,omitzero"`
	Controller  string    `json:"controller"`
}

// Evacuation is one move of an instance off a fenced host, recorded in
// its spec by the coordinator in the commit that moves it.
type Evacuation struct {
	From     string    `json:"from"`      // the dead host
	Fence    string    `json:"fence"`     // the fence resource recorded before the move
	FencedAt time.Time `json:"fenced_at"` // when the controller recorded the fence
	To       string    `json:"to"`
}

// VolumeCache is what a host's SSD cache last said about one attached
// volume (the krbd cache): a volume whose blocks were dirty on a host that
// died is not restarted elsewhere automatically, since that data is on the
// dead host's cache device, not in Ceph.
type VolumeCache struct {
	Volume      string    `json:"volume"`
	Mode        string    `json:"mode"` // writeback, writethrough, ...
	DirtyBlocks uint64    `json:"dirty_blocks"`
	DirtyBytes  uint64    `json:"dirty_bytes"`
	Observed    time.Time `json:"observed,omitzero"`
}

// StorageHost is what a host says about its Ceph clients in its report:
// the addresses they use, which a fence of the host blocklists.
type StorageHost struct {
	ClientAddrs []string `json:"client_addrs,omitempty"`
}
