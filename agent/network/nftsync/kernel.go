package nftsync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The generation cache.
//
// The kernel numbers the ruleset of a network namespace: every committed
// nf_tables batch, whoever sends it and whatever table it touches, adds
// exactly one to the generation (NFT_MSG_GETGEN), and nothing changes a
// table's rules, chains or sets without a commit. So when the generation is
// the one our own last batch produced, nothing happened since that batch and
// the table is exactly what it made: Sync then uses the state it remembers
// instead of reading 10,000 rules back. Any other generation (someone ran
// nft, another Sync, another program changed any table) or any doubt (an
// error, a batch carrying operations Sync did not queue, a rule whose handle
// the kernel did not echo) means a full read, so an out-of-band change is
// still seen and repaired by the next Sync.
//
// The state is remembered only when it is certain: after a read, if the
// generation did not move while reading; after a batch, if the generation
// after it is the one before the read plus one, that is our commit and no
// other. The namespace is named by its cookie, which the kernel never
// reuses, so a deleted namespace's state can never match a new one.

type cacheKey struct {
	netns  uint64
	family nftables.TableFamily
	name   string
}

type cached struct {
	gen  uint32
	snap snapshot
}

// maxCached bounds an engine's cache; namespaces come and go.
const maxCached = 1024

// Engine converges tables (Sync) and remembers, per namespace and table,
// what its own last batch left there (the generation cache above). Each
// driver owns one: a new Engine is a fresh process, which reads each table
// once. It is safe for concurrent use.
type Engine struct {
	mu    sync.Mutex
	cache map[cacheKey]cached
	last  lastSync     // what the last SyncTablesFrom left, if certain
	reads atomic.Int64 // full reads of a table, for tests
}

// lastSync is a SyncTablesFrom that left its tables as wanted: from what
// (sum), in which namespace, at which generation. The zero value matches
// nothing: a namespace cookie is never 0.
type lastSync struct {
	sum   Sum
	netns uint64
	gen   uint32
}

func (e *Engine) lastIs(l lastSync) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last.netns != 0 && e.last == l
}

func (e *Engine) setLast(l lastSync) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.last = l
}

// NewEngine returns an engine with an empty cache.
func NewEngine() *Engine { return &Engine{cache: map[cacheKey]cached{}} }

// Reads returns how many times the engine has read a table from the kernel.
func (e *Engine) Reads() int64 { return e.reads.Load() }

func (e *Engine) cacheGet(k cacheKey, gen uint32) (snapshot, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.cache[k]
	if !ok || c.gen != gen {
		return snapshot{}, false
	}
	return c.snap, true
}

func (e *Engine) cachePut(k cacheKey, gen uint32, s snapshot) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.cache[k]; !ok && len(e.cache) >= maxCached {
		clear(e.cache)
	}
	e.cache[k] = cached{gen: gen, snap: s}
}

func (e *Engine) cacheDrop(k cacheKey) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.cache, k)
}

// nextGen is the generation after one commit (the kernel skips 0).
func nextGen(g uint32) uint32 {
	if g++; g == 0 {
		g = 1
	}
	return g
}

// kconn is a netlink socket of our own in the namespace of an nft Conn: for
// the generation, the light rule read and sending the batch.
type kconn struct {
	nl     *netlink.Conn
	cookie uint64 // 0: unknown, no caching
}

func dialK(c *nftables.Conn) (*kconn, error) {
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: c.NetNS})
	if err != nil {
		return nil, err
	}
	if err := bigBuffers(nl); err != nil {
		nl.Close()
		return nil, err
	}
	k := &kconn{nl: nl}
	if rc, err := nl.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			if v, err := unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_NETNS_COOKIE); err == nil {
				k.cookie = v
			}
		})
	}
	return k, nil
}

func (k *kconn) Close() error { return k.nl.Close() }

func nftType(t int) netlink.HeaderType {
	return netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | t)
}

// nfgenmsg header: family, version, resource id.
func nfgen(family nftables.TableFamily) []byte { return []byte{byte(family), unix.NFNETLINK_V0, 0, 0} }

// gen returns the ruleset generation of the namespace.
func (k *kconn) gen() (uint32, error) {
	msgs, err := k.nl.Execute(netlink.Message{
		Header: netlink.Header{Type: nftType(unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   nfgen(unix.AF_UNSPEC),
	})
	if err != nil {
		return 0, fmt.Errorf("get generation: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Type != nftType(unix.NFT_MSG_NEWGEN) || len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, errors.New("get generation: no generation in reply")
}

// rules reads the handle and the comment (user data) of every rule of
// table t, by chain, in chain order. The diff needs nothing else, so the
// expressions are not decoded.
func (k *kconn) rules(t *nftables.Table) (map[string][]*nftables.Rule, error) {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_RULE_TABLE, Data: []byte(t.Name + "\x00")}})
	if err != nil {
		return nil, err
	}
	msgs, err := k.nl.Execute(netlink.Message{
		Header: netlink.Header{Type: nftType(unix.NFT_MSG_GETRULE), Flags: netlink.Request | netlink.Dump},
		Data:   append(nfgen(t.Family), attrs...),
	})
	if err != nil {
		return nil, err
	}
	chains := map[string]*nftables.Chain{}
	out := map[string][]*nftables.Rule{}
	for _, m := range msgs {
		if m.Header.Type != nftType(unix.NFT_MSG_NEWRULE) || len(m.Data) < 4 {
			continue
		}
		r, chain, err := lightRule(m.Data[4:])
		if err != nil {
			return nil, err
		}
		ch := chains[chain]
		if ch == nil {
			ch = &nftables.Chain{Table: t, Name: chain}
			chains[chain] = ch
		}
		r.Table, r.Chain = t, ch
		out[chain] = append(out[chain], r)
	}
	return out, nil
}

// lightRule decodes a rule message's chain, handle and user data.
func lightRule(b []byte) (*nftables.Rule, string, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, "", err
	}
	ad.ByteOrder = binary.BigEndian
	r := &nftables.Rule{}
	var chain string
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_CHAIN:
			chain = ad.String()
		case unix.NFTA_RULE_HANDLE:
			r.Handle = ad.Uint64()
		case unix.NFTA_RULE_USERDATA:
			r.UserData = ad.Bytes()
		}
	}
	return r, chain, ad.Err()
}

// ruleID names a rule of ours: table, chain and comment.
type ruleID struct {
	family       nftables.TableFamily
	table, chain string
	key          string
}

// flushResult is what the kernel said about our batch.
type flushResult struct {
	err     error
	handles map[ruleID]uint64 // new rules, from the kernel's echo
	foreign bool              // the batch had operations on tables not ours
}

// flush sends the operations queued on c as one batch through k instead of
// c's own socket. google/nftables asks for an acknowledgement for every
// operation and reads each with two system calls; here only the last
// operation is acknowledged (the kernel reports any failing operation
// anyway, and all replies are queued before sendmsg returns, since
// nfnetlink processes a batch synchronously), and the echo of each new
// rule, which the library requests and throws away, is read for the rule's
// handle. The operations are taken from c through its test-dial hook, so
// they are exactly the bytes c.Flush would send, including any the caller
// queued before Sync.
func (k *kconn) flush(c *nftables.Conn, t []*nftables.Table) flushResult {
	var res flushResult
	sent := false
	ack := []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 20)}}
	prev := c.TestDial
	c.TestDial = func(req []netlink.Message) ([]netlink.Message, error) {
		if req != nil && !sent {
			sent = true
			res = k.send(req, t)
		}
		return ack, nil // to c's receive loop: every operation acknowledged
	}
	err := c.Flush()
	c.TestDial = prev
	if res.err == nil && err != nil {
		res.err = err
	}
	if res.err == nil && !sent {
		res.err = errors.New("batch was not sent")
	}
	return res
}

func (k *kconn) send(batch []netlink.Message, t []*nftables.Table) flushResult {
	res := flushResult{handles: map[ruleID]uint64{}}
	if len(batch) < 3 {
		res.err = errors.New("empty batch")
		return res
	}
	last := len(batch) - 2 // the operation before NFNL_MSG_BATCH_END
	for i := 1; i <= last; i++ {
		h := &batch[i].Header
		if i < last {
			h.Flags &^= netlink.Acknowledge
		} else {
			h.Flags |= netlink.Acknowledge
		}
		if !ownTable(batch[i], t) {
			res.foreign = true
		}
	}
	out, err := k.nl.SendMessages(batch)
	if err != nil {
		res.err = fmt.Errorf("send batch: %w", err)
		return res
	}
	seq := out[last].Header.Sequence
	_ = k.nl.SetReadDeadline(time.Now().Add(time.Minute))
	for {
		msgs, err := k.nl.Receive()
		if err != nil {
			res.err = err // the first failing operation's error
			return res
		}
		for _, m := range msgs {
			switch {
			case m.Header.Type == nftType(unix.NFT_MSG_NEWRULE) && len(m.Data) >= 4:
				r, chain, err := lightRule(m.Data[4:])
				if err != nil {
					res.err = fmt.Errorf("decode echo: %w", err)
					return res
				}
				if key, ok := ruleKey(r); ok {
					res.handles[ruleID{nftables.TableFamily(m.Data[0]), tableOf(m), chain, key}] = r.Handle
				}
			case m.Header.Type == netlink.Error && m.Header.Sequence == seq:
				return res // acknowledged: the batch is committed
			}
		}
	}
}

// ownTable reports whether an operation names one of tables ts (of its
// family).
func ownTable(m netlink.Message, ts []*nftables.Table) bool {
	if len(m.Data) < 4 {
		return false
	}
	name := tableOf(m)
	for _, t := range ts {
		if nftables.TableFamily(m.Data[0]) == t.Family && name == t.Name {
			return true
		}
	}
	return false
}

// tableOf is the table an operation or echo names ("" if none).
func tableOf(m netlink.Message) string {
	if len(m.Data) < 4 {
		return ""
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return ""
	}
	// NFTA_{TABLE_NAME,CHAIN_TABLE,RULE_TABLE,SET_TABLE,SET_ELEM_LIST_TABLE}
	// are all attribute 1.
	for ad.Next() {
		if ad.Type() == 1 {
			return ad.String()
		}
	}
	return ""
}

func ruleKey(r *nftables.Rule) (string, bool) {
	return userdata.GetString(r.UserData, userdata.TypeComment)
}

// Generation returns the ruleset generation of c's namespace: it moves by
// one per committed batch, so tests count batches with it.
func Generation(c *nftables.Conn) (uint32, error) {
	k, err := dialK(c)
	if err != nil {
		return 0, err
	}
	defer k.Close()
	return k.gen()
}
