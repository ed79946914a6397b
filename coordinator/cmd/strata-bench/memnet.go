package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// memNet is an in-process network for memberlist: packets go through a
// bounded queue per member and are dropped when it is full, as a UDP
// socket drops them when its receive buffer is; streams are in-memory
// pipes. memberlist runs unchanged over it (its probes, gossip, push/pull
// and encryption): only the kernel's sockets are left out, so a pool of
// 1,000 members fits in one process for the scale figures.
type memNet struct {
	mu      sync.RWMutex
	byAddr  map[string]*memTransport
	next    int
	dropped atomic.Uint64
}

// memQueue is each member's packet queue, in packets (a 2 MiB UDP receive
// buffer holds about 1,500 of memberlist's packets).
const memQueue = 1024

func newMemNet() *memNet { return &memNet{byAddr: map[string]*memTransport{}} }

// transport returns a new member's transport at the next free address
// (127.0.0.1, ports counting up from 20000; only names, nothing binds).
func (n *memNet) transport() *memTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	port := 20000 + n.next
	n.next++
	t := &memTransport{net: n, ip: net.IPv4(127, 0, 0, 1), port: port,
		packets: make(chan *memberlist.Packet, memQueue), streams: make(chan net.Conn, 64), done: make(chan struct{})}
	t.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	n.byAddr[t.addr] = t
	return t
}

func (n *memNet) peer(addr string) (*memTransport, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	t, ok := n.byAddr[addr]
	if !ok {
		return nil, fmt.Errorf("no member at %s", addr)
	}
	return t, nil
}

type memTransport struct {
	net     *memNet
	ip      net.IP
	port    int
	addr    string
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	once    sync.Once
}

var _ memberlist.NodeAwareTransport = (*memTransport)(nil)

type memAddr string

func (a memAddr) Network() string { return "udp" }
func (a memAddr) String() string  { return string(a) }

func (t *memTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return t.ip, t.port, nil
}

func (t *memTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress delivers a copy of b, or drops it when the receiver's
// queue is full or it has shut down (UDP gives no error either).
func (t *memTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	dest, err := t.net.peer(a.Addr)
	if err != nil {
		return now, err
	}
	p := &memberlist.Packet{Buf: append([]byte(nil), b...), From: memAddr(t.addr), Timestamp: now}
	select {
	case <-dest.done:
	case dest.packets <- p:
	default:
		t.net.dropped.Add(1)
	}
	return now, nil
}

func (t *memTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *memTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout hands one end of a pipe to the receiver's stream
// listener, waiting at most timeout for it to be taken.
func (t *memTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	dest, err := t.net.peer(a.Addr)
	if err != nil {
		return nil, err
	}
	local, remote := net.Pipe()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case dest.streams <- remote:
		return local, nil
	case <-dest.done:
	case <-timer.C:
	}
	local.Close()
	remote.Close()
	return nil, errors.New("dial " + a.Addr + ": connection refused or timed out")
}

func (t *memTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *memTransport) Shutdown() error {
	t.once.Do(func() {
		close(t.done)
		t.net.mu.Lock()
		delete(t.net.byAddr, t.addr)
		t.net.mu.Unlock()
	})
	return nil
}
