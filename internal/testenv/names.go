package testenv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

var tagSeq atomic.Uint32

// pidWidth is the width of a pid in base 36: pid_max is at most 2^22,
// which is 5 base-36 digits.
const pidWidth = 5

// Tag returns a name tag unique to this process and call: kind (one
// letter), the full pid as 5 base-36 digits, then a per-process counter in
// base 36, e.g. "t01xk31". It is at most 8 characters while a process makes
// fewer than 1296 tags, so that links named after it fit IFNAMSIZ.
// TagPID reads the pid back, which the sweep uses.
func Tag(kind byte) string {
	return fmt.Sprintf("%c%0*s%s", kind, pidWidth, strconv.FormatInt(int64(os.Getpid()), 36), strconv.FormatUint(uint64(tagSeq.Add(1)), 36))
}

// TagPID returns the pid in a name that starts with a Tag.
func TagPID(name string) (int, bool) {
	if len(name) < 1+pidWidth+1 {
		return 0, false
	}
	pid, err := strconv.ParseInt(name[1:1+pidWidth], 36, 32)
	return int(pid), err == nil && pid > 0
}

// claimDir holds one file per underlay subnet a test process holds, named
// after the subnet and holding the holder's pid, so that concurrent test
// processes never put two bridges on one subnet.
var claimDir = "/run/strata-test/subnets"

// ClaimSubnet claims a /24 in 172.30.0.0/16 that no live test process
// holds and no address or route of the root namespace overlaps, starting
// at a slot derived from the pid and a counter. Claims of dead processes
// are taken over. The caller releases it with the returned function.
func ClaimSubnet() (netip.Prefix, func(), error) {
	if err := os.MkdirAll(claimDir, 0o755); err != nil {
		return netip.Prefix{}, nil, err
	}
	h := fnv.New32a()
	binary.Write(h, binary.LittleEndian, [2]uint32{uint32(os.Getpid()), tagSeq.Add(1)})
	start := int(h.Sum32() % 256)
	used := hostPrefixes()
	for i := range 256 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 30, byte((start + i) % 256), 0}), 24)
		if overlapsAny(p, used) {
			continue
		}
		file := filepath.Join(claimDir, strings.ReplaceAll(p.String(), "/", "_"))
		if claim(file) {
			return p, func() { os.Remove(file) }, nil
		}
	}
	return netip.Prefix{}, nil, errors.New("no free test subnet in 172.30.0.0/16")
}

// claim creates file holding this pid, taking over the claim of a dead pid.
func claim(file string) bool {
	for range 2 {
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			fmt.Fprintf(f, "%d\n", os.Getpid())
			f.Close()
			return true
		}
		b, rerr := os.ReadFile(file)
		pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		if rerr != nil || perr != nil || Alive(pid) {
			return false
		}
		os.Remove(file) // its holder is dead: try again
	}
	return false
}

// Alive reports whether process pid exists.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func hostPrefixes() []netip.Prefix {
	var out []netip.Prefix
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if p, err := netip.ParsePrefix(n.String()); err == nil {
				out = append(out, p.Masked())
			}
		}
	}
	return append(out, routePrefixes()...)
}

// routePrefixes reads the IPv4 routes of the root namespace.
func routePrefixes() []netip.Prefix {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) < 8 {
			continue
		}
		dst, err1 := strconv.ParseUint(f[1], 16, 32)
		mask, err2 := strconv.ParseUint(f[7], 16, 32)
		if err1 != nil || err2 != nil || mask == 0 {
			continue
		}
		var d, m [4]byte
		binary.LittleEndian.PutUint32(d[:], uint32(dst))
		binary.LittleEndian.PutUint32(m[:], uint32(mask))
		bits := 0
		for _, x := range m {
			for ; x != 0; x <<= 1 {
				bits++
			}
		}
		out = append(out, netip.PrefixFrom(netip.AddrFrom4(d), bits))
	}
	return out
}

func overlapsAny(p netip.Prefix, ps []netip.Prefix) bool {
	for _, q := range ps {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}
