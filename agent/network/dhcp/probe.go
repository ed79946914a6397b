package dhcp

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/strata-infra/strata/pkg/netnsutil"
)

// probeDNS asks the dnsmasq listening on addr in namespace ns for a name in
// its local domain and waits up to timeout for any answer with the query's
// ID. dnsmasq answers DHCP and DNS from one event loop, so a dnsmasq that
// answers DNS is not hung; one stopped (SIGSTOP) or wedged answers nothing.
func probeDNS(ns string, addr netip.Addr, domain string, timeout time.Duration) error {
	var conn *net.UDPConn
	err := netnsutil.Do(ns, func() error {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 53)))
		conn = c
		return err
	})
	if err != nil {
		return fmt.Errorf("dns probe socket in %q: %w", ns, err)
	}
	defer conn.Close()
	var idb [2]byte
	_, _ = rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	if _, err := conn.Write(dnsQuery(id, "strata-liveness-probe."+domain)); err != nil {
		return fmt.Errorf("dns probe to %s: %w", addr, err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 512)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return fmt.Errorf("no DNS answer from %s within %s: %w", addr, timeout, err)
		}
		if n >= 12 && binary.BigEndian.Uint16(buf) == id && buf[2]&0x80 != 0 {
			return nil // any response, NXDOMAIN included
		}
	}
}

// dnsQuery is a minimal RFC 1035 query for name, type A, class IN, with
// recursion desired.
func dnsQuery(id uint16, name string) []byte {
	q := make([]byte, 12, 64)
	binary.BigEndian.PutUint16(q[0:], id)
	q[2] = 0x01 // RD
	binary.BigEndian.PutUint16(q[4:], 1)
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		q = append(q, byte(len(label)))
		q = append(q, label...)
	}
	return append(q, 0, 0, 1, 0, 1)
}

// errNoProbeAddr: the DHCP port has no address to probe on.
var errNoProbeAddr = errors.New("the DHCP port has no address to probe")
