package gossip

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// State is a peer's liveness as this member sees it.
type State string

const (
	StateAlive   State = "alive"
	StateSuspect State = "suspect" // probes failed; SWIM has not yet ruled
	StateDead    State = "dead"    // declared failed; kept until reaped
	StateLeft    State = "left"    // left gracefully; kept until reaped
)

// Peer is one node of the pool, the local node included.
type Peer struct {
	Name       string
	Addr       netip.AddrPort
	State      State
	StateSince time.Time // when this member saw the state begin
	Meta       Meta
	MetaErr    error // set when the peer's meta did not decode; Meta is then zero
}

// view is this member's picture of the pool. memberlist exposes no
// race-free read of a node's state (Members returns pointers it later
// mutates under its own lock, and drops dead nodes), so the view is built
// only from copies taken inside memberlist's callbacks.
//
// Callbacks run with memberlist's node lock held: they must not block nor
// call back into memberlist. Lock order is memberlist's lock, then v.mu.
type view struct {
	mu        sync.Mutex
	peers     map[string]*entry
	local     string
	reapAfter time.Duration
	changed   func() // non-blocking, coalescing change signal
}

type entry struct {
	peer         Peer      // from join, update and leave events
	suspectSince time.Time // non-zero while our own probes say suspect
}

func newView(local string, reapAfter time.Duration, changed func()) *view {
	return &view{peers: make(map[string]*entry), local: local, reapAfter: reapAfter, changed: changed}
}

func peerFromNode(n *memberlist.Node) Peer {
	addr, _ := netip.AddrFromSlice(n.Addr)
	p := Peer{Name: n.Name, Addr: netip.AddrPortFrom(addr.Unmap(), n.Port)}
	p.Meta, p.MetaErr = DecodeMeta(n.Meta)
	return p
}

// set records an event-delivered state for n.
func (v *view) set(n *memberlist.Node, st State) {
	p := peerFromNode(n)
	p.State = st
	now := time.Now()
	v.mu.Lock()
	e, ok := v.peers[n.Name]
	if ok && e.peer.State == st && e.suspectSince.IsZero() {
		p.StateSince = e.peer.StateSince // a meta or address update
	} else {
		p.StateSince = now
	}
	v.peers[n.Name] = &entry{peer: p}
	v.mu.Unlock()
	v.changed()
}

// NotifyJoin, NotifyUpdate and NotifyLeave implement memberlist.EventDelegate.
func (v *view) NotifyJoin(n *memberlist.Node)   { v.set(n, StateAlive) }
func (v *view) NotifyUpdate(n *memberlist.Node) { v.set(n, StateAlive) }

// NotifyLeave fires for both failures and graceful leaves. memberlist
// v0.7.0 does not tell them apart here (its nodeState.State shadows
// Node.State, which stays StateAlive: hashicorp/memberlist#293), so a
// graceful leave is recognised by the leaving flag that Member.Leave
// advertises in the node's meta before leaving.
func (v *view) NotifyLeave(n *memberlist.Node) {
	if meta, err := DecodeMeta(n.Meta); err == nil && meta.leaving {
		v.set(n, StateLeft)
	} else {
		v.set(n, StateDead)
	}
}

// markSuspect is called when our own probe of name failed. memberlist has
// no callback for suspicion, only this log line (see logBridge).
func (v *view) markSuspect(name string) {
	v.mu.Lock()
	e, ok := v.peers[name]
	fresh := ok && name != v.local && e.peer.State == StateAlive && e.suspectSince.IsZero()
	if fresh {
		e.suspectSince = time.Now()
	}
	v.mu.Unlock()
	if fresh {
		v.changed()
	}
}

// clearSuspect ends a suspicion because the peer answered us directly.
func (v *view) clearSuspect(name string) {
	v.mu.Lock()
	e, ok := v.peers[name]
	cleared := ok && !e.suspectSince.IsZero()
	if cleared {
		e.suspectSince = time.Time{}
		e.peer.StateSince = time.Now()
	}
	v.mu.Unlock()
	if cleared {
		v.changed()
	}
}

// AckPayload and NotifyPingComplete implement memberlist.PingDelegate; a
// direct ack is the signal that a suspect peer has recovered, since a
// refutation with unchanged meta raises no event.
func (v *view) AckPayload() []byte { return nil }

func (v *view) NotifyPingComplete(n *memberlist.Node, _ time.Duration, _ []byte) {
	v.clearSuspect(n.Name)
}

// snapshot returns the peers sorted by name, dropping dead and left peers
// older than reapAfter. A suspicion older than suspectTTL is over: by then
// memberlist has either declared the peer dead (an event we would have
// seen) or it was refuted.
func (v *view) snapshot(now time.Time, suspectTTL time.Duration) []Peer {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]Peer, 0, len(v.peers))
	for name, e := range v.peers {
		p := e.peer
		if (p.State == StateDead || p.State == StateLeft) && now.Sub(p.StateSince) >= v.reapAfter {
			delete(v.peers, name)
			continue
		}
		if !e.suspectSince.IsZero() {
			if now.Sub(e.suspectSince) < suspectTTL {
				p.State, p.StateSince = StateSuspect, e.suspectSince
			} else {
				e.peer.StateSince = e.suspectSince.Add(suspectTTL)
				e.suspectSince = time.Time{}
				p.StateSince = e.peer.StateSince
			}
		}
		p.Meta = p.Meta.clone()
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// get returns one peer as snapshot would, without touching the others.
func (v *view) get(name string, now time.Time, suspectTTL time.Duration) (Peer, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.peers[name]
	if !ok {
		return Peer{}, false
	}
	p := e.peer
	if (p.State == StateDead || p.State == StateLeft) && now.Sub(p.StateSince) >= v.reapAfter {
		return Peer{}, false
	}
	if !e.suspectSince.IsZero() && now.Sub(e.suspectSince) < suspectTTL {
		p.State, p.StateSince = StateSuspect, e.suspectSince
	}
	p.Meta = p.Meta.clone()
	return p, true
}
