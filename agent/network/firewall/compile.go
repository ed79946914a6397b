// Package firewall compiles an ordered, first-match list of rules into as
// few nft rules as its meaning allows: verdict maps over the concatenation
// protocol . source . destination (. source port . destination port), one
// lookup per layer.
//
// Rules are placed in layers, in order. A rule goes into the lowest layer
// that is above every earlier overlapping rule with another verdict and
// holds no rule overlapping it; a rule covered by an earlier one is never
// the first match and is left out. Within a layer no two rules overlap, so
// a packet matches at most one element of it, and the first layer with a
// match gives the verdict the first matching rule of the list would have:
// a rule with another verdict that an earlier rule overlaps sits in a
// higher layer. A list whose rules do not overlap (distinct sources, or
// distinct protocols and ports) is one layer and one lookup, however long;
// a change of one rule is one element added or removed.
package firewall

import (
	"net/netip"
	"strconv"

	"github.com/google/nftables/expr"
	"github.com/strata-infra/strata/agent/network/nftsync"
)

// Ports is an inclusive port range; the zero value is any port.
type Ports struct{ From, To uint16 }

func (p Ports) any() bool { return p == Ports{} }

// Rule is one rule of an ordered list.
type Rule struct {
	Proto    uint8        // IP protocol; 0 is any
	Src, Dst netip.Prefix // IPv4; invalid or /0 is any
	SPort    Ports        // only with Proto tcp or udp
	DPort    Ports
	Verdict  expr.Verdict // accept, drop, return, or jump/goto a chain
}

// The two key shapes: with ports (tcp and udp rules that name ports) and
// without (any other rule; a packet need not carry ports to match).
var (
	portFields = []nftsync.Field{nftsync.L4Proto, nftsync.SAddr, nftsync.DAddr, nftsync.SPort, nftsync.DPort}
	addrFields = []nftsync.Field{nftsync.L4Proto, nftsync.SAddr, nftsync.DAddr}
)

// box is a rule as intervals, one per field of portFields.
type box [5][2]uint32

func span(p netip.Prefix) [2]uint32 {
	if !p.IsValid() || p.Bits() == 0 {
		return [2]uint32{0, 1<<32 - 1}
	}
	a := p.Masked().Addr().As4()
	lo := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	return [2]uint32{lo, lo | (1<<(32-p.Bits()) - 1)}
}

func portSpan(p Ports) [2]uint32 {
	if p.any() {
		return [2]uint32{0, 65535}
	}
	return [2]uint32{uint32(p.From), uint32(p.To)}
}

func (r Rule) box() box {
	proto := [2]uint32{0, 255}
	if r.Proto != 0 {
		proto = [2]uint32{uint32(r.Proto), uint32(r.Proto)}
	}
	return box{proto, span(r.Src), span(r.Dst), portSpan(r.SPort), portSpan(r.DPort)}
}

func (a box) overlaps(b box) bool {
	for i := range a {
		if a[i][1] < b[i][0] || b[i][1] < a[i][0] {
			return false
		}
	}
	return true
}

func (a box) covers(b box) bool {
	for i := range a {
		if b[i][0] < a[i][0] || b[i][1] > a[i][1] {
			return false
		}
	}
	return true
}

func sameVerdict(a, b expr.Verdict) bool { return a.Kind == b.Kind && a.Chain == b.Chain }

func anyPrefix(p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return p.Masked()
}

// Compile returns the rules that evaluate list in order (each a verdict
// map lookup; a packet no rule matches falls through to what the caller
// puts after them) and the maps they use, named name + layer + shape.
func Compile(name string, list []Rule) ([]nftsync.Rule, []nftsync.Set) {
	return NewCompiler(name).Compile(list)
}

// layers places each rule of list (see the package comment): its layer,
// or -1 for a rule an earlier one covers.
func layers(list []Rule, boxes []box) []int32 {
	layer := make([]int32, len(list))
	srcs, dsts := newPrefixIndex(len(list)), newPrefixIndex(len(list))
	var occupied []int // by layer: 1 + the last rule that found an overlapping rule there
	for j, r := range list {
		b := boxes[j]
		src, dst := anyPrefix(r.Src), anyPrefix(r.Dst)
		idx, p := srcs, src
		if dsts.count(dst) < srcs.count(src) {
			idx, p = dsts, dst
		}
		dead, bound := false, 0
		idx.overlapping(p, func(i int32) {
			if dead || !boxes[i].overlaps(b) {
				return
			}
			if boxes[i].covers(b) {
				dead = true
				return
			}
			for len(occupied) <= int(layer[i]) {
				occupied = append(occupied, 0)
			}
			occupied[layer[i]] = j + 1
			if !sameVerdict(list[i].Verdict, r.Verdict) && int(layer[i])+1 > bound {
				bound = int(layer[i]) + 1
			}
		})
		if dead {
			layer[j] = -1
			continue
		}
		l := bound
		for l < len(occupied) && occupied[l] == j+1 {
			l++
		}
		layer[j] = int32(l)
		srcs.insert(src, int32(j))
		dsts.insert(dst, int32(j))
	}
	return layer
}

// sig is how a rule can be an exact key: the fields it matches, the
// prefix length of each (0 where no mask applies), the key's values, and
// a name for that combination.
type sig struct {
	name   []byte
	n      int
	fields [5]nftsync.Field
	masks  [5]int
	vals   [5]uint32
}

func (s *sig) add(tag byte, bits int, f nftsync.Field, mask int, v uint32) {
	s.name = append(s.name, tag)
	if bits > 0 {
		s.name = strconv.AppendInt(s.name, int64(bits), 10)
	}
	s.fields[s.n], s.masks[s.n], s.vals[s.n] = f, mask, v
	s.n++
}

// signature fills s and says whether r can be an exact key: every field
// exact, a prefix or any.
func signature(r Rule, s *sig) bool {
	s.name, s.n = s.name[:0], 0
	for _, p := range []Ports{r.SPort, r.DPort} {
		if !p.any() && p.From != p.To {
			return false
		}
	}
	if r.Proto != 0 {
		s.add('p', 0, nftsync.L4Proto, 0, uint32(r.Proto))
	}
	if r.Src.IsValid() && r.Src.Bits() > 0 {
		s.add('s', r.Src.Bits(), nftsync.SAddr, r.Src.Bits(), span(r.Src)[0])
	}
	if r.Dst.IsValid() && r.Dst.Bits() > 0 {
		s.add('d', r.Dst.Bits(), nftsync.DAddr, r.Dst.Bits(), span(r.Dst)[0])
	}
	if !r.SPort.any() {
		s.add('S', 0, nftsync.SPort, 0, uint32(r.SPort.From))
	}
	if !r.DPort.any() {
		s.add('D', 0, nftsync.DPort, 0, uint32(r.DPort.From))
	}
	// A key of one field narrower than a register (a protocol, a port)
	// is padded to 4 bytes in a set typed for 1 or 2, and nft then
	// cannot list the ruleset (it asserts): such a rule goes to the range
	// maps, whose keys are concatenations.
	if s.n == 1 && (s.fields[0] == nftsync.L4Proto || s.fields[0] == nftsync.SPort || s.fields[0] == nftsync.DPort) {
		return false
	}
	return true
}

func element(fields []nftsync.Field, b box, v expr.Verdict) nftsync.Range {
	from, to := make([]uint32, len(fields)), make([]uint32, len(fields))
	for i := range fields {
		from[i], to[i] = b[i][0], b[i][1]
	}
	return nftsync.Range{From: nftsync.Pack(fields, from), To: nftsync.Pack(fields, to), Verdict: v}
}
