package router_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// wire sends raw IPv4 packets in a namespace and reads what leaves it: the
// namespace's default route is a tun device whose other end the test
// holds.
type wire struct {
	tun       int // the tun device's file (non-blocking)
	marked    int // raw socket whose packets carry the firewall's mark
	plain     int // raw socket without a mark, for the sentinel
	id        uint16
	buf       []byte
	local     netip.Addr // the tun's address
	sentinel  netip.Addr
	sentinels uint16
}

func newWire(t *testing.T, ns string, mark int) *wire {
	w := &wire{buf: make([]byte, 65536), local: netip.MustParseAddr("192.0.2.1"), sentinel: netip.MustParseAddr("192.0.2.2")}
	const name = "t19tun"
	err := netnsutil.Do(ns, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		w.tun = fd
		var req [unix.IFNAMSIZ + 64]byte
		copy(req[:], name)
		binary.NativeEndian.PutUint16(req[unix.IFNAMSIZ:], unix.IFF_TUN|unix.IFF_NO_PI)
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); e != 0 {
			return fmt.Errorf("TUNSETIFF: %w", e)
		}
		for _, s := range []*int{&w.marked, &w.plain} {
			if *s, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW); err != nil {
				return fmt.Errorf("raw socket: %w", err)
			}
		}
		if err := unix.SetsockoptInt(w.marked, unix.SOL_SOCKET, unix.SO_MARK, mark); err != nil {
			return fmt.Errorf("SO_MARK: %w", err)
		}
		// No ICMP rate limit here: every reject must answer.
		for _, s := range []struct{ path, val string }{{"/proc/sys/net/ipv4/icmp_ratemask", "0"}, {"/proc/sys/net/ipv4/icmp_ratelimit", "0"}} {
			if err := writeFile(s.path, s.val); err != nil {
				return err
			}
		}
		return nil
	})
	t.Cleanup(func() {
		for _, fd := range []int{w.tun, w.marked, w.plain} {
			if fd > 0 {
				unix.Close(fd)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := netnsutil.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err == nil {
		err = h.LinkSetUp(l)
	}
	if err == nil {
		err = h.AddrAdd(l, &netlink.Addr{IPNet: netlink.NewIPNet(w.local.AsSlice())})
	}
	if err == nil {
		err = h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Scope: netlink.SCOPE_LINK})
	}
	if err != nil {
		t.Fatalf("tun %s in %s: %v", name, ns, err)
	}
	return w
}

func writeFile(path, val string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(val)); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// verdict sends p through the firewall and says what became of it.
func (w *wire) verdict(p probe) (string, error) {
	w.id++
	if w.id == 0 {
		w.id = 1
	}
	pkt := build(p, w.id)
	to := &unix.SockaddrInet4{Addr: p.dst.As4()}
	sendErr := unix.Sendto(w.marked, pkt, 0, to)
	if sendErr != nil && !errors.Is(sendErr, unix.EPERM) {
		return "", fmt.Errorf("send: %w", sendErr)
	}
	w.sentinels++
	sp := probe{proto: 17, src: w.local, dst: w.sentinel, sport: 9, dport: w.sentinels}
	if err := unix.Sendto(w.plain, build(sp, 0xffff), 0, &unix.SockaddrInet4{Addr: w.sentinel.As4()}); err != nil {
		return "", fmt.Errorf("send sentinel: %w", err)
	}
	got := vDrop
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := unix.Read(w.tun, w.buf)
		if errors.Is(err, unix.EAGAIN) {
			if time.Now().After(deadline) {
				return "", errors.New("sentinel never came out of the tun device")
			}
			fds := []unix.PollFd{{Fd: int32(w.tun), Events: unix.POLLIN}}
			_, _ = unix.Poll(fds, 100)
			continue
		}
		if err != nil {
			return "", fmt.Errorf("read tun: %w", err)
		}
		b := w.buf[:n]
		if len(b) < 20 || b[0]>>4 != 4 {
			continue
		}
		hl := int(b[0]&15) * 4
		id, proto := binary.BigEndian.Uint16(b[4:]), b[9]
		dst := netip.AddrFrom4([4]byte(b[16:20]))
		l4 := b[hl:]
		switch {
		case dst == w.sentinel && proto == 17 && len(l4) >= 4 && binary.BigEndian.Uint16(l4[2:]) == w.sentinels:
			if (got == vAccept) != (sendErr == nil) {
				return "", fmt.Errorf("came out as %q but send said %v", got, sendErr)
			}
			return got, nil
		case id == w.id && dst == p.dst:
			got = vAccept
		case proto == 6 && len(l4) >= 14 && l4[13]&0x04 != 0 && dst == p.src:
			got = vReset
		case proto == 1 && len(l4) >= 8+20 && l4[0] == 3 && l4[1] == 3 && binary.BigEndian.Uint16(l4[8+4:]) == w.id:
			got = vUnrch
		}
	}
}

// build makes an IPv4 packet with identification id: a TCP SYN, a UDP
// datagram, an ICMP echo request, or 8 bytes of protocol 253.
func build(p probe, id uint16) []byte {
	var l4 []byte
	switch p.proto {
	case 6:
		l4 = make([]byte, 20)
		binary.BigEndian.PutUint16(l4[0:], p.sport)
		binary.BigEndian.PutUint16(l4[2:], p.dport)
		binary.BigEndian.PutUint32(l4[4:], uint32(id)<<8)
		l4[12], l4[13] = 5<<4, 0x02 // data offset 5, SYN
		binary.BigEndian.PutUint16(l4[14:], 1024)
	case 17:
		l4 = make([]byte, 12)
		binary.BigEndian.PutUint16(l4[0:], p.sport)
		binary.BigEndian.PutUint16(l4[2:], p.dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	case 1:
		l4 = make([]byte, 12)
		l4[0] = 8 // echo request
		binary.BigEndian.PutUint16(l4[4:], id)
	default:
		l4 = make([]byte, 8)
	}
	switch p.proto {
	case 6:
		binary.BigEndian.PutUint16(l4[16:], pseudoSum(p, l4))
	case 17:
		if s := pseudoSum(p, l4); s != 0 {
			binary.BigEndian.PutUint16(l4[6:], s)
		} else {
			binary.BigEndian.PutUint16(l4[6:], 0xffff)
		}
	case 1:
		binary.BigEndian.PutUint16(l4[2:], ^sum(0, l4))
	}
	ip := make([]byte, 20, 20+len(l4))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	binary.BigEndian.PutUint16(ip[4:], id)
	ip[8], ip[9] = 64, p.proto
	copy(ip[12:], p.src.AsSlice())
	copy(ip[16:], p.dst.AsSlice())
	binary.BigEndian.PutUint16(ip[10:], ^sum(0, ip))
	return append(ip, l4...)
}

func pseudoSum(p probe, l4 []byte) uint16 {
	ph := append(append(p.src.AsSlice(), p.dst.AsSlice()...), 0, p.proto, byte(len(l4)>>8), byte(len(l4)))
	return ^sum(uint32(sum(0, ph)), l4)
}

// sum is the Internet checksum's one's complement sum.
func sum(acc uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		acc += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		acc += uint32(b[len(b)-1]) << 8
	}
	for acc>>16 != 0 {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}
