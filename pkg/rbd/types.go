// Package rbd is Strata's RBD driver: the pool operations of the storage
// controller (create, clone, snapshot, resize, flatten, delete, import) and
// the read side (status: size, usage, parent, children, watchers, lock
// owners).
//
// This package is the client: the work is done with librados/librbd (go-ceph)
// by package rbd/ceph in a child process, strata-rbd, which alone is built
// with the tag `pacific` (Debian 12's Ceph 16.2, cgo headers from
// librados-dev and librbd-dev) and alone loads the Ceph libraries. Without
// strata-rbd, Connect reports ErrNoCeph.
package rbd

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors the controller and API map to statuses and 4xx answers.
var (
	ErrNoCeph      = errors.New("no Ceph support: strata-rbd (built with the tag `pacific`) is not installed")
	ErrNotFound    = errors.New("not found")
	ErrExists      = errors.New("already exists")
	ErrInUse       = errors.New("in use: the image has watchers (attached)")
	ErrHasChildren = errors.New("clones depend on it")
	ErrShrink      = errors.New("a volume never shrinks")
	ErrNotOwned    = errors.New("image exists but is not Strata's (owner metadata differs)")
)

// OwnerKey is the image metadata key holding the Strata resource that owns
// an image; Strata changes or deletes only images whose owner matches.
const OwnerKey = "strata.owner"

// BaseSnap is the protected snapshot every imported image carries; clones
// are made from it.
const BaseSnap = "base"

// Config is how one host reaches the cluster: no /etc/ceph/ceph.conf is
// read, so what is used is what is configured.
type Config struct {
	MonHost string        // Ceph "mon host" syntax, e.g. "[v2:10.0.0.1:3300,v1:10.0.0.1:6789]"
	User    string        // cephx id without "client.", e.g. "strata"
	Keyring string        // path of the user's keyring file
	Timeout time.Duration // monitor and OSD operation timeout (default 30 s)
}

// Validate names the first missing field.
func (c Config) Validate() error {
	switch {
	case strings.TrimSpace(c.MonHost) == "":
		return fmt.Errorf("ceph.mon_host: required")
	case c.User == "" || strings.HasPrefix(c.User, "client."):
		return fmt.Errorf("ceph.user %q: want the cephx id without \"client.\"", c.User)
	case c.Keyring == "":
		return fmt.Errorf("ceph.keyring: required")
	}
	return nil
}

// Ref names one image, or with Snap one snapshot of it.
type Ref struct {
	Pool, Image, Snap string
}

func (r Ref) String() string {
	if r.Snap != "" {
		return r.Pool + "/" + r.Image + "@" + r.Snap
	}
	return r.Pool + "/" + r.Image
}

// ImageStatus is what `stratactl volumes show` reports about an image.
type ImageStatus struct {
	Ref
	Size       uint64   // bytes
	Used       uint64   // bytes allocated in the image itself (not its parent)
	Parent     *Ref     // the snapshot it was cloned from, until flattened
	Depth      int      // clone depth: 0 for an image without a parent
	Snapshots  []Snap   // its snapshots
	Watchers   []string // client addresses that have it open
	LockOwners []string // clients holding its exclusive lock
	Owner      string   // OwnerKey metadata
}

// Snap is one snapshot of an image.
type Snap struct {
	Name      string
	Size      uint64
	Protected bool
	Children  []Ref // clones made from it
}

// Progress is called during long copies with bytes done and total.
type Progress func(done, total uint64)

const defaultTimeout = 30 * time.Second

// ErrStaleEpoch is a plan older than one a controller already acted on.
var ErrStaleEpoch = errors.New("stale plan epoch")

// LeaseHolder is who holds the controller lease.
type LeaseHolder struct {
	Cookie string // the holder's host name
	Addr   string // its client address
}
