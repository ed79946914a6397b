//go:build pacific

// Command strata-rbd holds one connection to a Ceph cluster for
// strata-agent or stratactl (rbd.Conn), which start it: librados and librbd
// are loaded here, not in them. It serves the RBD operations over the
// socket it gets as file descriptor 3 and exits when that closes (its
// parent closed the connection or died).
package main

import (
	"fmt"
	"net"
	"net/rpc"
	"os"

	"github.com/strata-infra/strata/pkg/rbd/ceph"
)

func main() {
	f := os.NewFile(3, "rpc")
	nc, err := net.FileConn(f)
	if err != nil {
		fmt.Fprintln(os.Stderr, "strata-rbd: started by strata-agent and stratactl, with a socket as fd 3:", err)
		os.Exit(2)
	}
	f.Close()
	s := ceph.NewServer()
	srv := rpc.NewServer()
	if err := srv.RegisterName("RBD", s); err != nil {
		fmt.Fprintln(os.Stderr, "strata-rbd:", err)
		os.Exit(1)
	}
	srv.ServeConn(nc)
	s.Close()
}
