// Package netlinksafe wraps netlink dumps so that a dump the kernel marks as
// interrupted (netlink.ErrDumpInterrupted: the table changed while it was
// being read, and the data may be partial) is retried instead of used.
package netlinksafe

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// maxAttempts bounds the retries of one interrupted dump.
const maxAttempts = 30

func retry[T any](what string, dump func() (T, error)) (T, error) {
	var (
		res T
		err error
	)
	for range maxAttempts {
		res, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return res, err
		}
	}
	return res, fmt.Errorf("dump %s: still interrupted after %d attempts: %w", what, maxAttempts, err)
}

// LinkList dumps all links of h's namespace.
func LinkList(h *netlink.Handle) ([]netlink.Link, error) {
	return retry("links", h.LinkList)
}

// NeighList dumps the neighbour (or, for AF_BRIDGE, FDB) entries of one link.
func NeighList(h *netlink.Handle, linkIndex, family int) ([]netlink.Neigh, error) {
	return retry("neighbours", func() ([]netlink.Neigh, error) {
		return h.NeighList(linkIndex, family)
	})
}

// AddrList dumps the addresses of one link.
func AddrList(h *netlink.Handle, link netlink.Link, family int) ([]netlink.Addr, error) {
	return retry("addresses", func() ([]netlink.Addr, error) {
		return h.AddrList(link, family)
	})
}
