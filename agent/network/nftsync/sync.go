package nftsync

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Table is the desired content of one nft table. Sync owns the table
// entirely; it never touches any other table and never flushes a ruleset.
type Table struct {
	Family nftables.TableFamily
	Name   string
	Sets   []Set
	Chains []Chain
}

// Chain is one chain; a base chain has Hook set.
type Chain struct {
	Name     string
	Type     nftables.ChainType
	Hook     *nftables.ChainHook
	Priority *nftables.ChainPriority
	Policy   *nftables.ChainPolicy
	Rules    []Rule
}

// Set is a named set or map. Without Fields its keys are IPv4 addresses
// (Elems; with IsMap it maps them to IPv4 addresses). With Fields its keys
// are ranges over the concatenation of those fields (Ranges), which the
// kernel keeps in one pipapo set; with VMap it maps each range to a
// verdict. A set's name must change when its kind or fields do.
type Set struct {
	Name  string
	IsMap bool // ipv4_addr : ipv4_addr
	Elems []Elem

	Fields []Field
	VMap   bool
	Ranges []Range
	// Exact keys (a hash set; Range.To unused) instead of ranges.
	Exact bool
}

// Elem is one element; Val only in maps.
type Elem struct{ Key, Val netip.Addr }

// Range is one element of a set with Fields: the keys from From to To,
// field by field (each field padded to 4 bytes, as the kernel keeps them),
// and in a verdict map the verdict.
type Range struct {
	From, To []byte
	Verdict  expr.Verdict
}

// Stats counts what one Sync changed.
type Stats struct {
	RulesAdded, RulesDeleted, ElemsAdded, ElemsDeleted, Objects int
}

// Ops is the number of batch operations.
func (s Stats) Ops() int {
	return s.RulesAdded + s.RulesDeleted + s.ElemsAdded + s.ElemsDeleted + s.Objects
}

// commentPrefix starts every rule comment Sync writes.
const commentPrefix = "strata:"

// Key is the identity of the n-th rule with this text in its chain.
func Key(text string, n int) string {
	sum := sha256.Sum256([]byte(text + "\x00" + strconv.Itoa(n)))
	return commentPrefix + hex.EncodeToString(sum[:8])
}

// Sync reads the table through c, computes the difference to want and
// applies it as one batch (one Flush). An unchanged table makes no batch at
// all. When the batch fails the kernel keeps the previous table entirely
// and the error says so. Sync owns the table: operations the caller queued
// on c before Sync go into the same batch, but then Sync does not remember
// the result (see the generation cache in kernel.go).
func (e *Engine) Sync(c *nftables.Conn, want Table) (Stats, error) {
	return e.SyncTables(c, want)
}

// SyncTables is Sync for several tables (of any families) at once: their
// differences go into one batch, so the kernel applies all of them or none
// and no packet ever sees some tables changed and the others not.
func (e *Engine) SyncTables(c *nftables.Conn, want ...Table) (Stats, error) {
	if c.TestDial != nil { // a fake kernel: the library's own paths only
		st, _, err := e.syncTables(c, nil, want)
		return st, err
	}
	k, err := dialK(c)
	if err != nil {
		return Stats{}, fmt.Errorf("netlink: %w", err)
	}
	defer k.Close()
	st, _, err := e.syncTables(c, k, want)
	return st, err
}

// Sum names what a caller builds its tables from (a hash of its inputs).
type Sum [sha256.Size]byte

// SyncTablesFrom is SyncTables for a caller that names what its tables are
// built from. When sum is the one of this engine's last SyncTablesFrom,
// which left the tables exactly as wanted, and the namespace's ruleset
// generation is still the one that call left, nothing was committed since
// (see the generation cache in kernel.go) and the tables are what build
// would make again: neither build nor any read of the tables runs, and
// skipped is true. Otherwise it is SyncTables(c, build()...). A caller
// whose build depends on anything but what sum covers must not use it.
func (e *Engine) SyncTablesFrom(c *nftables.Conn, sum Sum, build func() []Table) (st Stats, skipped bool, err error) {
	if c.TestDial != nil {
		st, err := e.SyncTables(c, build()...)
		return st, false, err
	}
	k, err := dialK(c)
	if err != nil {
		return Stats{}, false, fmt.Errorf("netlink: %w", err)
	}
	defer k.Close()
	if k.cookie != 0 {
		if g, err := k.gen(); err == nil && e.lastIs(lastSync{sum: sum, netns: k.cookie, gen: g}) {
			return Stats{}, true, nil
		}
	}
	e.setLast(lastSync{})
	st, gen, err := e.syncTables(c, k, build())
	if err == nil && gen != 0 {
		e.setLast(lastSync{sum: sum, netns: k.cookie, gen: gen})
	}
	return st, false, err
}

// tableRun is one table's part of a batch.
type tableRun struct {
	t    *nftables.Table
	key  cacheKey
	hit  bool
	next snapshot
}

// syncTables returns, with the stats, the generation the tables are
// certainly as wanted at (0: not certain).
func (e *Engine) syncTables(c *nftables.Conn, k *kconn, want []Table) (Stats, uint32, error) {
	var st Stats
	var gen0 uint32
	caching := k != nil && k.cookie != 0
	if caching {
		var err error
		if gen0, err = k.gen(); err != nil {
			caching = false
		}
	}
	runs := make([]tableRun, len(want))
	for i, w := range want {
		r, err := e.queueTable(c, k, w, caching, gen0, &st)
		if err != nil {
			return st, 0, err
		}
		runs[i] = r
	}
	if st.Ops() == 0 {
		// Remember what was read, if nothing was committed while reading.
		if caching {
			if g, err := k.gen(); err == nil && g == gen0 {
				for _, r := range runs {
					if !r.hit {
						e.cachePut(r.key, gen0, r.next)
					}
				}
				return st, gen0, nil
			}
		}
		return st, 0, nil
	}
	if k == nil {
		if err := c.Flush(); err != nil {
			return st, 0, applyErr(st, want, err)
		}
		return st, 0, nil
	}
	tables := make([]*nftables.Table, len(runs))
	for i, r := range runs {
		tables[i] = r.t
	}
	res := k.flush(c, tables)
	if res.err != nil {
		for _, r := range runs {
			e.cacheDrop(r.key)
		}
		return st, 0, applyErr(st, want, res.err)
	}
	// Remember the result if our commit is the only one since gen0 was
	// read and every new rule's handle is known.
	if !caching || res.foreign {
		return st, 0, nil
	}
	g, err := k.gen()
	certain := err == nil && g == nextGen(gen0)
	for _, r := range runs {
		if certain && r.next.setHandles(res.handles, r.t) {
			e.cachePut(r.key, g, r.next)
		} else {
			e.cacheDrop(r.key)
		}
	}
	if !certain {
		return st, 0, nil
	}
	return st, g, nil
}

// queueTable queues on c what turns table want into what it should be,
// counting the operations into st.
func (e *Engine) queueTable(c *nftables.Conn, k *kconn, want Table, caching bool, gen0 uint32, st *Stats) (tableRun, error) {
	t := &nftables.Table{Family: want.Family, Name: want.Name}
	run := tableRun{t: t, key: cacheKey{family: want.Family, name: want.Name}}
	if caching {
		run.key.netns = k.cookie
	}
	have := snapshot{}
	if caching {
		have, run.hit = e.cacheGet(run.key, gen0)
	}
	if !run.hit {
		if caching {
			e.cacheDrop(run.key)
		}
		tables, err := c.ListTablesOfFamily(want.Family)
		if err != nil {
			return run, fmt.Errorf("list tables: %w", err)
		}
		exists := false
		for _, x := range tables {
			exists = exists || x.Name == want.Name
		}
		have = snapshot{chains: map[string]*nftables.Chain{}, sets: map[string]*nftables.Set{}}
		if exists {
			if have, err = e.read(c, k, t); err != nil {
				return run, err
			}
		} else {
			c.AddTable(t)
			st.Objects++
		}
	}
	next := newSnapshot()
	var del deletions
	// Chains first (verdict map elements name them), then sets, then the
	// rules (which name both), then what goes.
	chains := addChains(c, t, want.Chains, have, next, st, &del)
	if err := syncSets(c, t, want.Sets, have, next, st, &del); err != nil {
		return run, err
	}
	for i, wc := range want.Chains {
		next.rules[wc.Name] = syncRules(c, chains[i], wc.Rules, have.rules[wc.Name], st)
	}
	del.queue()
	run.next = next
	return run, nil
}

func applyErr(st Stats, want []Table, err error) error {
	names := make([]string, len(want))
	for i, w := range want {
		names[i] = strconv.Quote(w.Name)
	}
	return fmt.Errorf("apply batch of %d operations to table %s (previous ruleset kept): %w", st.Ops(), strings.Join(names, " and "), err)
}

// snapshot is a table as the diff needs it: chains, rules (handle and
// comment), sets and their elements.
type snapshot struct {
	chains map[string]*nftables.Chain
	rules  map[string][]*nftables.Rule
	sets   map[string]*nftables.Set
	elems  map[string]map[string]span // by set, by elemID
	sums   map[string]uint64          // by set: fingerprint of what Sync last wanted
}

func newSnapshot() snapshot {
	return snapshot{chains: map[string]*nftables.Chain{}, rules: map[string][]*nftables.Rule{},
		sets: map[string]*nftables.Set{}, elems: map[string]map[string]span{}, sums: map[string]uint64{}}
}

// setHandles gives the new rules (handle 0) of s the handles the kernel
// echoed; false if one is missing.
func (s snapshot) setHandles(h map[ruleID]uint64, t *nftables.Table) bool {
	for chain, rules := range s.rules {
		for _, r := range rules {
			if r.Handle != 0 {
				continue
			}
			key, _ := ruleKey(r)
			if r.Handle = h[ruleID{t.Family, t.Name, chain, key}]; r.Handle == 0 {
				return false
			}
		}
	}
	return true
}

// read reads the table; with k, rules are read without their expressions.
func (e *Engine) read(c *nftables.Conn, k *kconn, t *nftables.Table) (snapshot, error) {
	e.reads.Add(1)
	s := newSnapshot()
	chains, err := c.ListChainsOfTableFamily(t.Family)
	if err != nil {
		return s, fmt.Errorf("list chains of %q: %w", t.Name, err)
	}
	for _, ch := range chains {
		if ch.Table.Name != t.Name {
			continue
		}
		s.chains[ch.Name] = ch
		if k != nil {
			continue
		}
		if s.rules[ch.Name], err = c.GetRules(t, ch); err != nil {
			return s, fmt.Errorf("list rules of %q %q: %w", t.Name, ch.Name, err)
		}
	}
	if k != nil {
		if s.rules, err = k.rules(t); err != nil {
			return s, fmt.Errorf("list rules of %q: %w", t.Name, err)
		}
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return s, fmt.Errorf("list sets of %q: %w", t.Name, err)
	}
	for _, set := range sets {
		s.sets[set.Name] = set
		elems, err := c.GetSetElements(set)
		if err != nil {
			return s, fmt.Errorf("list elements of %q %q: %w", t.Name, set.Name, err)
		}
		byID := make(map[string]span, len(elems))
		// The library reports a verdict map's data type as its key type.
		vmap := set.IsMap && (set.KeyType.Name == "verdict" || set.DataType.Name == "verdict")
		for _, e := range elems {
			byID[elemID(e, vmap)] = spanOf(e)
		}
		s.elems[set.Name] = byID
	}
	return s, nil
}

// deletions are the objects a batch removes, queued after every add and
// rule change in dependency order: the rules of the chains that go (which
// may jump to each other or name a set), then sets and maps (whose
// elements may name a chain), then those chains, which nothing left refers
// to. Deleting in another order is what makes the kernel answer "device or
// resource busy".
type deletions struct {
	flush, sets, chains []func()
}

func (d *deletions) queue() {
	for _, fs := range [][]func(){d.flush, d.sets, d.chains} {
		for _, f := range fs {
			f()
		}
	}
}

// addChains adds the chains that are new or whose base changes, and
// queues the deletion of those no longer wanted. It returns the wanted
// chains, in order.
func addChains(c *nftables.Conn, t *nftables.Table, want []Chain, have, next snapshot, st *Stats, del *deletions) []*nftables.Chain {
	wantNames := map[string]bool{}
	chains := make([]*nftables.Chain, len(want))
	for i, wc := range want {
		wantNames[wc.Name] = true
		ch := &nftables.Chain{Table: t, Name: wc.Name, Type: wc.Type, Hooknum: wc.Hook, Priority: wc.Priority, Policy: wc.Policy}
		chains[i] = ch
		next.chains[wc.Name] = ch
		old, ok := have.chains[wc.Name]
		if !ok || !sameBase(old, ch) {
			c.AddChain(ch) // new, or an existing base chain whose policy changes
			st.Objects++
		}
	}
	for name, old := range have.chains {
		if wantNames[name] {
			continue
		}
		// Rules jumping to it from kept chains are deleted by syncRules;
		// those in other chains that go are flushed before any chain is
		// deleted.
		del.flush = append(del.flush, func() { c.FlushChain(old) })
		del.chains = append(del.chains, func() { c.DelChain(old) })
		st.Objects++
	}
	return chains
}

func sameBase(old, ch *nftables.Chain) bool {
	if (old.Hooknum == nil) != (ch.Hooknum == nil) {
		return false
	}
	if ch.Policy == nil {
		return old.Policy == nil || *old.Policy == nftables.ChainPolicyAccept
	}
	return old.Policy != nil && *old.Policy == *ch.Policy
}
