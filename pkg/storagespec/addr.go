package storagespec

import (
	"net/netip"
	"strings"
)

// AddrIP is the IP of a Ceph client address as watchers, lock owners and
// the blocklist show it ("10.0.0.7:0/123", "v1:10.0.0.7:0/0", a vector
// "[v2:10.0.0.7:0/1,v1:10.0.0.7:0/1]", or a bare IP); "" when there is none.
func AddrIP(addr string) string {
	a := addr
	if strings.HasPrefix(a, "[v") || strings.HasPrefix(a, "[any") {
		a = strings.TrimSuffix(strings.TrimPrefix(a, "["), "]")
		if i := strings.IndexByte(a, ','); i >= 0 {
			a = a[:i]
		}
	}
	for _, p := range []string{"v2:", "v1:", "any:"} {
		a = strings.TrimPrefix(a, p)
	}
	if i := strings.IndexByte(a, '/'); i >= 0 {
		a = a[:i]
	}
	if ap, err := netip.ParseAddrPort(a); err == nil {
		return ap.Addr().String()
	}
	if ip, err := netip.ParseAddr(a); err == nil {
		return ip.String()
	}
	return ""
}
