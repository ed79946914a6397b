package firewall

import "net/netip"

// prefixIndex finds the rules whose prefix overlaps a given one: two IPv4
// prefixes overlap exactly when one contains the other, so they are the
// rules on the path from the root of a binary trie to the prefix and those
// below it.
type prefixIndex struct {
	nodes []trieNode
}

type trieNode struct {
	child [2]int32 // 0: none (the root is never a child)
	rules []int32
	below int32 // rules in this node's subtree, itself included
}

func newPrefixIndex() *prefixIndex { return &prefixIndex{nodes: make([]trieNode, 1, 64)} }

func bit(a [4]byte, i int) int { return int(a[i/8]>>(7-i%8)) & 1 }

func (x *prefixIndex) insert(p netip.Prefix, rule int32) {
	a, n := p.Addr().As4(), int32(0)
	for i := 0; i < p.Bits(); i++ {
		x.nodes[n].below++
		b := bit(a, i)
		if x.nodes[n].child[b] == 0 {
			x.nodes = append(x.nodes, trieNode{})
			x.nodes[n].child[b] = int32(len(x.nodes) - 1)
		}
		n = x.nodes[n].child[b]
	}
	x.nodes[n].below++
	x.nodes[n].rules = append(x.nodes[n].rules, rule)
}

// count is how many rules overlap p, without listing them.
func (x *prefixIndex) count(p netip.Prefix) int {
	a, n, c := p.Addr().As4(), int32(0), 0
	for i := 0; i < p.Bits(); i++ {
		c += len(x.nodes[n].rules)
		if n = x.nodes[n].child[bit(a, i)]; n == 0 {
			return c
		}
	}
	return c + int(x.nodes[n].below)
}

// overlapping calls f with every rule whose prefix overlaps p.
func (x *prefixIndex) overlapping(p netip.Prefix, f func(int32)) {
	a, n := p.Addr().As4(), int32(0)
	for i := 0; i < p.Bits(); i++ {
		for _, r := range x.nodes[n].rules {
			f(r)
		}
		if n = x.nodes[n].child[bit(a, i)]; n == 0 {
			return
		}
	}
	stack := []int32{n}
	for len(stack) > 0 {
		n, stack = stack[len(stack)-1], stack[:len(stack)-1]
		for _, r := range x.nodes[n].rules {
			f(r)
		}
		for _, c := range x.nodes[n].child {
			if c != 0 {
				stack = append(stack, c)
			}
		}
	}
}
