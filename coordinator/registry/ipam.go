package registry

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"

	"github.com/strata-infra/strata/pkg/api"
)

// usable reports whether a is an address a port may take in prefix p: not
// the IPv4 network or broadcast address.
func usable(p netip.Prefix, a netip.Addr) bool {
	if !p.Contains(a) {
		return false
	}
	if a.Is4() && p.Bits() <= 30 {
		if a == p.Masked().Addr() || a == lastAddr(p) {
			return false
		}
	}
	return true
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// defaultPool is every usable address after the gateway.
func defaultPool(p netip.Prefix, gw netip.Addr) api.IPRange {
	start := p.Masked().Addr().Next()
	if gw.IsValid() && gw == start {
		start = start.Next()
	}
	end := lastAddr(p)
	if end.Is4() && p.Bits() <= 30 {
		end = end.Prev()
	}
	return api.IPRange{Start: start.String(), End: end.String()}
}

// maxScan bounds the search for a free address in a pool, so an IPv6 /64
// cannot turn one allocation into an endless walk.
const maxScan = 1 << 20

// allocate returns the lowest free address of the pools: one in used
// (whatever the value) is taken.
func allocate[V any](pools []api.IPRange, used map[netip.Addr]V, gw netip.Addr) (netip.Addr, error) {
	return allocateFrom(pools, used, gw, netip.Addr{})
}

// allocateFrom is allocate searching only above after (when valid).
func allocateFrom[V any](pools []api.IPRange, used map[netip.Addr]V, gw, after netip.Addr) (netip.Addr, error) {
	for _, r := range pools {
		a, _ := netip.ParseAddr(r.Start)
		end, _ := netip.ParseAddr(r.End)
		if after.IsValid() && after.BitLen() == a.BitLen() && !after.Less(a) && !end.Less(after) {
			// Below after, this pool was found taken by the last search;
			// other pools are searched whole (unordered pools stay right).
			a = after.Next()
		}
		for n := 0; a.IsValid() && a.Compare(end) <= 0 && n < maxScan; a, n = a.Next(), n+1 {
			if _, inUse := used[a]; !inUse && a != gw {
				return a, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("no free address left in the allocation pools")
}

// inPools reports whether a lies in one of the ranges.
func inPools(pools []api.IPRange, a netip.Addr) bool {
	for _, r := range pools {
		lo, err1 := netip.ParseAddr(r.Start)
		hi, err2 := netip.ParseAddr(r.End)
		if err1 == nil && err2 == nil && !a.Less(lo) && !hi.Less(a) {
			return true
		}
	}
	return false
}

// newMAC returns a random locally administered unicast MAC, 02:5a:...
func newMAC() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return net.HardwareAddr{0x02, 0x5a, b[0], b[1], b[2], b[3]}.String()
}

func decode[T any](r api.Resource) T {
	var v T
	_ = json.Unmarshal(r.Spec, &v)
	return v
}

// portsOf lists the ports of one network.
func portsOf(a *Admission, project, network string) ([]api.Resource, error) {
	all, err := a.Tx.List("port", project, false)
	if err != nil {
		return nil, err
	}
	var out []api.Resource
	for _, p := range all {
		if decode[api.PortSpec](p).Network == network {
			out = append(out, p)
		}
	}
	return out, nil
}

// subnetsOf lists the subnets of one network.
func subnetsOf(a *Admission, project, network string) ([]api.Resource, error) {
	all, err := a.Tx.List("subnet", project, false)
	if err != nil {
		return nil, err
	}
	var out []api.Resource
	for _, s := range all {
		if decode[api.SubnetSpec](s).Network == network {
			out = append(out, s)
		}
	}
	return out, nil
}
