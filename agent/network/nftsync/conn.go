package nftsync

import (
	"errors"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// sockBuf is the send and receive buffer of an nft socket. google/nftables
// sends a whole batch in one sendmsg, so the default (about 200 KiB) fails
// with EMSGSIZE at about a thousand rules; 10,000 rules need about 3 MiB.
// The *FORCE options need CAP_NET_ADMIN, which the agent has.
const sockBuf = 64 << 20

// Open returns an nft connection into the namespace whose file descriptor
// is nsFd (-1: the caller's namespace) with buffers large enough for big
// batches. Each call to it opens its own netlink socket.
func Open(nsFd int) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.WithSockOptions(bigBuffers)}
	if nsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(nsFd))
	}
	return nftables.New(opts...)
}

func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		// Not a kernel socket: the test dial through which Sync takes a
		// batch from the library (see flush), or a test's fake.
		return nil
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = errors.Join(
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sockBuf),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sockBuf))
	})
	return errors.Join(err, serr)
}
