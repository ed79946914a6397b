package nftsync

import (
	"sort"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
)

// syncRules makes chain ch hold want in order, touching only what differs:
// rules whose identity is gone are deleted, new ones are inserted before
// the next rule that stays (or appended), and rules that stay but are out
// of order (outside a longest increasing run) are moved by delete and
// insert. It returns the chain as it will be after the batch: kept rules
// with their handles, new ones with handle 0 (the kernel assigns it).
func syncRules(c *nftables.Conn, ch *nftables.Chain, want []Rule, have []*nftables.Rule, st *Stats) []*nftables.Rule {
	keys := RuleKeys(want)
	pos := make(map[string]int, len(keys))
	for i, k := range keys {
		pos[k] = i
	}
	// Existing rules that are wanted, in chain order, by desired index.
	var seq []int
	var seqRule []*nftables.Rule
	seen := map[string]bool{}
	for _, r := range have {
		k, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		i, ok := pos[k]
		if !ok || seen[k] {
			mustDel(c, r, st)
			continue
		}
		seen[k] = true
		seq = append(seq, i)
		seqRule = append(seqRule, r)
	}
	keep := lis(seq)
	handle := make([]uint64, len(want)) // of kept rules, by desired index
	for j, i := range seq {
		if keep[j] {
			handle[i] = seqRule[j].Handle
		} else {
			mustDel(c, seqRule[j], st)
		}
	}
	next := uint64(0) // handle of the next kept rule after i
	nextOf := make([]uint64, len(want))
	for i := len(want) - 1; i >= 0; i-- {
		nextOf[i] = next
		if handle[i] != 0 {
			next = handle[i]
		}
	}
	after := make([]*nftables.Rule, len(want))
	for i, w := range want {
		ud := userdata.AppendString(nil, userdata.TypeComment, keys[i])
		after[i] = &nftables.Rule{Table: ch.Table, Chain: ch, Handle: handle[i], UserData: ud}
		if handle[i] != 0 {
			continue
		}
		r := &nftables.Rule{Table: ch.Table, Chain: ch, Exprs: w.Exprs, UserData: ud}
		if nextOf[i] != 0 {
			r.Position = nextOf[i]
			c.InsertRule(r) // before the next kept rule
		} else {
			c.AddRule(r) // at the end, in order
		}
		st.RulesAdded++
	}
	return after
}

func mustDel(c *nftables.Conn, r *nftables.Rule, st *Stats) {
	// DelRule only fails for a zero handle, which the kernel never reports.
	_ = c.DelRule(r)
	st.RulesDeleted++
}

// RuleKeys returns the identity of each rule: its text's hash and how many
// rules with the same text came before it.
func RuleKeys(rules []Rule) []string {
	n := map[string]int{}
	keys := make([]string, len(rules))
	for i, r := range rules {
		keys[i] = Key(r.Text, n[r.Text])
		n[r.Text]++
	}
	return keys
}

// lis marks the members of one longest strictly increasing subsequence of
// seq (patience sorting, O(n log n)).
func lis(seq []int) []bool {
	keep := make([]bool, len(seq))
	var tails []int // indices into seq
	prev := make([]int, len(seq))
	for i, v := range seq {
		j := sort.Search(len(tails), func(k int) bool { return seq[tails[k]] >= v })
		if j > 0 {
			prev[i] = tails[j-1]
		} else {
			prev[i] = -1
		}
		if j == len(tails) {
			tails = append(tails, i)
		} else {
			tails[j] = i
		}
	}
	if len(tails) == 0 {
		return keep
	}
	for i := tails[len(tails)-1]; i >= 0; i = prev[i] {
		keep[i] = true
	}
	return keep
}
