package firewall

import "net/netip"

// prefixIndex finds the rules whose prefix overlaps a given one: two IPv4
// prefixes overlap exactly when one contains the other, so they are the
// rules on the path from the root of a binary trie to the prefix and those
// below it.
type prefixIndex struct {
	nodes []trieNode
	links []link // the rules of each node, as linked lists
}

type trieNode struct {
	child [2]int32 // 0: none (the root is never a child)
	below int32    // rules in this node's subtree, itself included
	head  int32    // first of this node's rules in links; -1: none
}

type link struct{ rule, next int32 }

func newPrefixIndex(rules int) *prefixIndex {
	x := &prefixIndex{nodes: make([]trieNode, 1, 1+8*rules), links: make([]link, 0, rules)}
	x.nodes[0].head = -1
	return x
}

// each calls f with each rule at node n.
func (x *prefixIndex) each(n int32, f func(int32)) {
	for l := x.nodes[n].head; l >= 0; l = x.links[l].next {
		f(x.links[l].rule)
	}
}

func bit(a [4]byte, i int) int { return int(a[i/8]>>(7-i%8)) & 1 }

func (x *prefixIndex) insert(p netip.Prefix, rule int32) {
	a, n := p.Addr().As4(), int32(0)
	for i := 0; i < p.Bits(); i++ {
		x.nodes[n].below++
		b := bit(a, i)
		if x.nodes[n].child[b] == 0 {
			x.nodes = append(x.nodes, trieNode{head: -1})
			x.nodes[n].child[b] = int32(len(x.nodes) - 1)
		}
		n = x.nodes[n].child[b]
	}
	x.nodes[n].below++
	x.links = append(x.links, link{rule: rule, next: x.nodes[n].head})
	x.nodes[n].head = int32(len(x.links) - 1)
}

// count is how many rules overlap p, without listing them.
func (x *prefixIndex) count(p netip.Prefix) int {
	a, n, c := p.Addr().As4(), int32(0), 0
	for i := 0; i < p.Bits(); i++ {
		c += int(x.nodes[n].below)
		next := x.nodes[n].child[bit(a, i)]
		for _, ch := range x.nodes[n].child {
			if ch != 0 {
				c -= int(x.nodes[ch].below) // only this node's own rules
			}
		}
		if n = next; n == 0 {
			return c
		}
	}
	return c + int(x.nodes[n].below)
}

// overlapping calls f with every rule whose prefix overlaps p.
func (x *prefixIndex) overlapping(p netip.Prefix, f func(int32)) {
	a, n := p.Addr().As4(), int32(0)
	for i := 0; i < p.Bits(); i++ {
		x.each(n, f)
		if n = x.nodes[n].child[bit(a, i)]; n == 0 {
			return
		}
	}
	stack := []int32{n}
	for len(stack) > 0 {
		n, stack = stack[len(stack)-1], stack[:len(stack)-1]
		x.each(n, f)
		for _, c := range x.nodes[n].child {
			if c != 0 {
				stack = append(stack, c)
			}
		}
	}
}
