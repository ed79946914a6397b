package nlink

import (
	"errors"
	"fmt"
	"sync"

	"github.com/strata-infra/strata/pkg/netlinksafe"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LinkCache is one dump of a namespace's links, shared by the drivers of a
// pass. Each driver used to dump the host's links itself, five dumps a
// pass (and one per DHCP network), the largest share of what a pass over
// 2,000 ports allocated; on a pass that changes nothing one dump now
// serves them all.
//
// A dump is reused only while no link of the namespace changed since it
// was taken, as the kernel tells: the cache listens on the rtnetlink link
// groups (linkGroups), and the kernel queues a change's notification to
// listeners before it answers the request that made it, so a driver that
// just made a link finds the notice waiting and dumps again. A notice of
// anyone's change (an operator's "ip link"), a lost notice (the socket
// overran) or any doubt (an error reading the socket) means a new dump,
// and each pass starts with one (Invalidate).
type LinkCache struct {
	mu    sync.Mutex
	fd    int // the listening socket; -1 after Close
	links map[string]netlink.Link
	dumps int
}

// linkGroups are the rtnetlink groups whose notices invalidate a dump: link
// changes, and the IPv6 per-link settings (addrgenmode) a dump carries too.
const linkGroups = 1<<(unix.RTNLGRP_LINK-1) | 1<<(unix.RTNLGRP_IPV6_IFINFO-1)

// NewLinkCache listens for the link changes of namespace ns ("": the
// caller's own).
func NewLinkCache(ns string) (*LinkCache, error) {
	fd := -1
	err := netnsutil.Do(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: linkGroups}); err != nil {
			unix.Close(fd)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listen for link changes: %w", err)
	}
	return &LinkCache{fd: fd}, nil
}

// Invalidate forgets the dump: the next Links dumps again.
func (c *LinkCache) Invalidate() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.links = nil
}

// Dumps is how many dumps the cache took, for tests.
func (c *LinkCache) Dumps() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dumps
}

// Links returns the namespace's links by name, dumped through h (a handle
// in the cache's namespace) unless the last dump still holds. The map is
// the caller's; the links in it are shared and must not be changed. A nil
// cache dumps every time.
func (c *LinkCache) Links(h *netlink.Handle) (map[string]netlink.Link, error) {
	if c == nil {
		return dump(h)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed() {
		c.links = nil
	}
	if c.links == nil {
		m, err := dump(h)
		if err != nil {
			return nil, err
		}
		c.dumps++
		// A change made while dumping may or may not be in the dump:
		// keep it only if none came.
		if c.changed() {
			return m, nil
		}
		c.links = m
	}
	m := make(map[string]netlink.Link, len(c.links))
	for k, v := range c.links {
		m[k] = v
	}
	return m, nil
}

// changed drains the socket and reports whether any notice (or doubt) was
// in it.
func (c *LinkCache) changed() bool {
	if c.fd < 0 {
		return true
	}
	buf := make([]byte, 16<<10)
	seen := false
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return seen
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil: // ENOBUFS: notices were lost
			seen = true
			if !errors.Is(err, unix.ENOBUFS) {
				return true
			}
		case n > 0:
			seen = true
		default:
			return seen
		}
	}
}

// Close stops listening; a closed cache dumps every time.
func (c *LinkCache) Close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd, c.links = -1, nil
	return err
}

func dump(h *netlink.Handle) (map[string]netlink.Link, error) {
	list, err := netlinksafe.LinkList(h)
	if err != nil {
		return nil, err
	}
	m := make(map[string]netlink.Link, len(list))
	for _, l := range list {
		m[l.Attrs().Name] = l
	}
	return m, nil
}
