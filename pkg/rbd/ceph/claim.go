//go:build pacific

package ceph

import (
	"fmt"
	"strings"
	"time"

	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/strata-infra/strata/pkg/rbd"
)

// Claim is called on a host before its qemu opens image r (a volume
// attached there, or an instance's root disk before it starts). It keeps
// the one rule of exclusive access, never two writers:
//
//   - while any other client has the image open (a watcher), it refuses
//     with ErrInUse: a live client, or one whose death Ceph has not yet
//     noticed (its watch times out after osd_client_watch_timeout, 30 s),
//     may still write;
//   - an exclusive lock left by a client that no longer watches the image
//     (dead, or cut off) is broken, after that client's address is put on
//     the OSD blocklist, so that it can never write again even if it was
//     only partitioned and comes back.
//
// It returns the lock owners it broke. A watcher seen once may be a
// reader passing by (the storage controller reading the status), so a
// refusal needs the watcher on three reads in a row.
func (c *Conn) Claim(r rbd.Ref) ([]string, error) {
	r.Snap = ""
	img, done, err := c.open(r)
	if err != nil {
		return nil, err
	}
	defer done()
	self := int64(c.rados.GetInstanceID())
	var others []string
	for i := 0; i < 3; i++ {
		if i > 0 {
			time.Sleep(300 * time.Millisecond)
		}
		ws, err := img.ListWatchers()
		if err != nil {
			return nil, fmt.Errorf("watchers of %s: %w", r, mapErr(r, err))
		}
		others = others[:0]
		for _, w := range ws {
			if w.Id != self {
				others = append(others, w.Addr)
			}
		}
		if len(others) == 0 {
			break
		}
	}
	if len(others) > 0 {
		return nil, fmt.Errorf("image %s is open by %s (a live client, or one Ceph has not yet found dead): refusing a second writer: %w",
			r, strings.Join(others, ", "), rbd.ErrInUse)
	}
	owners, err := img.LockGetOwners()
	if err != nil {
		return nil, fmt.Errorf("lock owners of %s: %w", r, mapErr(r, err))
	}
	var broke []string
	for _, o := range owners {
		if o.Owner == c.Addr() {
			continue // this connection's own
		}
		if err := c.Blocklist(o.Owner); err != nil {
			return broke, fmt.Errorf("fence the dead lock owner %s of %s: %w", o.Owner, r, err)
		}
		if err := img.LockBreak(librbd.LockModeExclusive, o.Owner); err != nil {
			return broke, fmt.Errorf("break the lock of %s held by %s: %w", r, o.Owner, mapErr(r, err))
		}
		broke = append(broke, o.Owner)
	}
	return broke, nil
}
