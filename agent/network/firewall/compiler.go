package firewall

import (
	"fmt"
	"slices"
	"sort"

	"github.com/strata-infra/strata/agent/network/nftsync"
)

// Compiler compiles the successive lists of one chain, keeping what it
// made of the previous one. A new list that differs from the previous in
// a few adjacent rules (one rule added, removed or changed) is placed
// again only where the change can reach, and only the maps holding a
// rule whose place changed are built again; the other maps are the
// previous ones, element for element, so nftsync skips them. The result
// is always what Compile gives for the new list. Not safe for concurrent
// use.
type Compiler struct {
	name    string
	list    []Rule
	rs      []ruleState
	groups  map[int32]map[string]*group // by layer, by key
	full    int
	partial int
}

// ruleState is what the compiler made of one rule of the list.
type ruleState struct {
	box   box
	layer int32         // -1: an earlier rule covers it; it is never the first match
	g     *group        // the map (or catch-all rule) it is in; nil when covered
	elem  nftsync.Range // its element there
}

// group is one map of one layer (or a layer's catch-all rule) and the
// rules it holds.
type group struct {
	layer  int32
	kind   byte // 'h' exact keys, 'a' address ranges, 'p' port ranges, 'c' a rule matching everything
	sig    string
	fields []nftsync.Field
	masks  []int
	n      int  // rules in it
	dirty  bool // its rules changed since it was last built
	set    nftsync.Set
	rule   nftsync.Rule
}

// rank orders a layer's lookups: exact maps by signature, then address
// ranges, then port ranges, then the catch-all.
func (g *group) rank() int {
	switch g.kind {
	case 'h':
		return 0
	case 'a':
		return 1
	case 'p':
		return 2
	}
	return 3
}

// maxTouched is how many rules a change may place again before a full
// compile (a trie per field instead of a scan per rule) is cheaper.
const maxTouched = 32

// NewCompiler returns a compiler for the chain whose maps are named name
// + layer + shape.
func NewCompiler(name string) *Compiler { return &Compiler{name: name} }

// Counts says how many compiles were full and how many reused the
// previous one.
func (c *Compiler) Counts() (full, partial int) { return c.full, c.partial }

// Compile returns the rules and maps of list, as Compile does.
func (c *Compiler) Compile(list []Rule) ([]nftsync.Rule, []nftsync.Set) {
	if c.rs == nil || !c.again(list) {
		c.compileAll(list)
		c.list = append(c.list[:0:0], list...) // the caller may reuse its slice
		c.full++
	} else {
		c.partial++
	}
	return c.render()
}

func (c *Compiler) compileAll(list []Rule) {
	boxes := make([]box, len(list))
	for j, r := range list {
		boxes[j] = r.box()
	}
	layer := layers(list, boxes)
	c.groups = map[int32]map[string]*group{}
	c.rs = make([]ruleState, len(list))
	var sg sig
	for j := range list {
		c.rs[j] = ruleState{box: boxes[j], layer: layer[j]}
		if layer[j] >= 0 {
			c.rs[j].g, c.rs[j].elem = c.place(list[j], boxes[j], layer[j], &sg)
		}
	}
}

// again compiles list from the previous compile: the rules before the
// first difference keep their places (a rule's place depends on earlier
// rules only); the changed rules are placed; a later rule is placed again
// only when it overlaps a rule that went, came or moved, since only
// overlapping earlier rules decide its place. False when the change
// reaches too many rules; the state is then to be rebuilt.
func (c *Compiler) again(list []Rule) bool {
	old := c.list
	p := 0
	for p < len(old) && p < len(list) && old[p] == list[p] {
		p++
	}
	s := 0
	for s < len(old)-p && s < len(list)-p && old[len(old)-1-s] == list[len(list)-1-s] {
		s++
	}
	if len(old)-p-s+len(list)-p-s > maxTouched {
		return false
	}
	var moved []box // of rules that went, came or changed place
	for _, st := range c.rs[p : len(old)-s] {
		if st.layer >= 0 {
			st.g.n--
			st.g.dirty = true
			moved = append(moved, st.box)
		}
	}
	// In place: a new slice of 10,000 states each time would cost more
	// in copying and collecting than the compile itself.
	mid := list[p : len(list)-s]
	c.rs = slices.Replace(c.rs, p, len(old)-s, make([]ruleState, len(mid))...)
	c.list = slices.Replace(c.list, p, len(old)-s, mid...)
	rs := c.rs
	var sg sig
	for j := p; j < len(list)-s; j++ {
		b := list[j].box()
		rs[j] = ruleState{box: b, layer: layerOf(list, rs, j, b)}
		if rs[j].layer >= 0 {
			rs[j].g, rs[j].elem = c.place(list[j], b, rs[j].layer, &sg)
			moved = append(moved, b)
		}
	}
	touched := len(mid)
	for j := len(list) - s; j < len(list); j++ {
		st := &rs[j]
		if !overlapsAny(st.box, moved) {
			continue
		}
		if touched++; touched > maxTouched {
			return false
		}
		l := layerOf(list, rs, j, st.box)
		if l == st.layer {
			continue
		}
		if st.layer >= 0 {
			st.g.n--
			st.g.dirty = true
		}
		st.layer, st.g = l, nil
		if l >= 0 {
			st.g, st.elem = c.place(list[j], st.box, l, &sg)
		}
		moved = append(moved, st.box)
	}
	return true
}

func overlapsAny(b box, boxes []box) bool {
	for _, o := range boxes {
		if o.overlaps(b) {
			return true
		}
	}
	return false
}

// layerOf places rule j given the places of the rules before it, by a
// scan of them: the same rule as the trie walk in layers.
func layerOf(list []Rule, rs []ruleState, j int, b box) int32 {
	var bound int32
	var occupied []bool
	for i := range j {
		o := &rs[i]
		if o.layer < 0 || !o.box.overlaps(b) {
			continue
		}
		if o.box.covers(b) {
			return -1
		}
		for len(occupied) <= int(o.layer) {
			occupied = append(occupied, false)
		}
		occupied[o.layer] = true
		if !sameVerdict(list[i].Verdict, list[j].Verdict) && o.layer+1 > bound {
			bound = o.layer + 1
		}
	}
	l := bound
	for int(l) < len(occupied) && occupied[l] {
		l++
	}
	return l
}

// place puts rule r in layer l: the map its fields call for, and its
// element there.
func (c *Compiler) place(r Rule, b box, l int32, sg *sig) (*group, nftsync.Range) {
	kind, key := byte('p'), "#p"
	switch ok := signature(r, sg); {
	case ok && sg.n == 0:
		kind, key = 'c', "#c"
	case ok:
		kind = 'h'
	case r.SPort.any() && r.DPort.any():
		kind, key = 'a', "#a"
	}
	byKey := c.groups[l]
	if byKey == nil {
		byKey = map[string]*group{}
		c.groups[l] = byKey
	}
	var g *group
	if kind == 'h' {
		g = byKey[string(sg.name)]
	} else {
		g = byKey[key]
	}
	if g == nil {
		g = &group{layer: l, kind: kind}
		switch kind {
		case 'h':
			g.sig, key = string(sg.name), string(sg.name)
			g.fields = append([]nftsync.Field(nil), sg.fields[:sg.n]...)
			g.masks = append([]int(nil), sg.masks[:sg.n]...)
		case 'a':
			g.fields = addrFields
		case 'p':
			g.fields = portFields
		}
		byKey[key] = g
	}
	g.n++
	g.dirty = true
	switch kind {
	case 'c':
		return g, nftsync.Range{Verdict: r.Verdict}
	case 'h':
		return g, nftsync.Range{From: nftsync.Pack(g.fields, sg.vals[:sg.n]), Verdict: r.Verdict}
	}
	return g, element(g.fields, b, r.Verdict)
}

// render builds the groups whose rules changed and lists every group's
// lookup, layer by layer.
func (c *Compiler) render() ([]nftsync.Rule, []nftsync.Set) {
	var all []*group
	for l, byKey := range c.groups {
		for k, g := range byKey {
			if g.n == 0 {
				delete(byKey, k)
				continue
			}
			if g.dirty {
				g.set.Ranges = make([]nftsync.Range, 0, g.n)
			}
			all = append(all, g)
		}
		if len(byKey) == 0 {
			delete(c.groups, l)
		}
	}
	for j := range c.rs {
		if g := c.rs[j].g; g != nil && g.dirty {
			g.set.Ranges = append(g.set.Ranges, c.rs[j].elem)
		}
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.layer != b.layer {
			return a.layer < b.layer
		}
		if a.rank() != b.rank() {
			return a.rank() < b.rank()
		}
		return a.sig < b.sig
	})
	rules := make([]nftsync.Rule, 0, len(all))
	var sets []nftsync.Set
	for _, g := range all {
		if g.dirty {
			c.build(g)
		}
		rules = append(rules, g.rule)
		if g.kind != 'c' {
			sets = append(sets, g.set)
		}
	}
	return rules, sets
}

// build makes group g's map (its elements are in place) and lookup.
func (c *Compiler) build(g *group) {
	g.dirty = false
	layer := fmt.Sprintf("%s_%d", c.name, g.layer)
	switch g.kind {
	case 'c':
		g.rule = nftsync.R().Verdict(g.set.Ranges[0].Verdict)
		g.set.Ranges = nil
	case 'h':
		g.set = nftsync.Set{Name: layer + "h" + g.sig, Fields: g.fields, VMap: true, Exact: true, Ranges: g.set.Ranges}
		g.rule = nftsync.R().MaskedVMap(g.set.Name, g.fields, g.masks)
	default:
		g.set = nftsync.Set{Name: layer + string(g.kind), Fields: g.fields, VMap: true, Ranges: g.set.Ranges}
		g.rule = nftsync.R().VMap(g.set.Name, g.fields...)
	}
}
