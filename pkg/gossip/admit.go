package gossip

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/hashicorp/memberlist"
)

// Identity is what the coordinator holds for a registered host: the
// address it gossips from and its VTEP. A host registers them with its own
// (per-host) API credential, so a member holding only the gossip key
// cannot pass for it.
//
// A coordinator's identity (Coordinator set) binds its name to its
// gossip address the same way; the coordinator writes it from its store.
type Identity struct {
	Addr        netip.Addr
	VTEP        netip.Addr
	Coordinator bool
}

// admission is the member's rule for who counts: an agent member must
// carry the name, address and VTEP of a registered host, a coordinator
// member the name and address of a registered coordinator.
// memberlist asks it for every alive message (so a refused member never
// enters the pool's state here, and cannot hold a real host's name), and
// Peers filters by it again, so a registration that changes later is
// honoured for members already known.
type admission struct {
	local string
	log   *slog.Logger

	loggedMu sync.Mutex
	logged   map[string]bool // refusals already logged, by name and address

	// registeredOnly refuses agent members while no registry is known;
	// without it they are all admitted until then.
	registeredOnly bool

	mu    sync.RWMutex
	known bool // false until the first registry arrives
	ids   map[string]Identity
}

func (a *admission) set(ids map[string]Identity) {
	cp := make(map[string]Identity, len(ids))
	for k, v := range ids {
		cp[k] = v
	}
	a.mu.Lock()
	a.known, a.ids = true, cp
	a.mu.Unlock()
}

// check says why p may not count as a member, or nil.
func (a *admission) check(p Peer) error {
	if p.Name == a.local {
		return nil
	}
	if p.MetaErr != nil {
		return fmt.Errorf("member %q: meta does not decode: %w", p.Name, p.MetaErr)
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if !a.known {
		if a.registeredOnly && p.Meta.Role != RoleCoordinator {
			return fmt.Errorf("member %q: the registered hosts are not known here yet", p.Name)
		}
		return nil
	}
	id, registered := a.ids[p.Name]
	coordinator := p.Meta.Role == RoleCoordinator
	switch {
	case coordinator && !registered:
		return fmt.Errorf("coordinator member %q is not a registered coordinator", p.Name)
	case coordinator && !id.Coordinator:
		return fmt.Errorf("coordinator member %q takes a registered host's name", p.Name)
	case coordinator && p.Addr.Addr() != id.Addr:
		return fmt.Errorf("coordinator member %q gossips from %s, it is registered at %s", p.Name, p.Addr.Addr(), id.Addr)
	case coordinator:
		return nil
	case !registered:
		return fmt.Errorf("member %q is not a registered host", p.Name)
	case id.Coordinator:
		return fmt.Errorf("member %q takes a registered coordinator's name", p.Name)
	case p.Addr.Addr() != id.Addr:
		return fmt.Errorf("member %q gossips from %s, host %q is registered at %s", p.Name, p.Addr.Addr(), p.Name, id.Addr)
	case p.Meta.VTEP != id.VTEP:
		return fmt.Errorf("member %q advertises VTEP %s, host %q is registered with %s", p.Name, p.Meta.VTEP, p.Name, id.VTEP)
	}
	return nil
}

// NotifyAlive implements memberlist.AliveDelegate: an error drops the
// alive message, so the member never joins this node's view.
func (a *admission) NotifyAlive(n *memberlist.Node) error {
	p := peerFromNode(n)
	err := a.check(p)
	if err != nil {
		a.logRefusal(p, err)
	}
	return err
}

// logRefusal logs each refused name and address once (up to a bound, so
// a flood of made-up names cannot flood the log).
func (a *admission) logRefusal(p Peer, err error) {
	k := p.Name + "@" + p.Addr.String()
	a.loggedMu.Lock()
	fresh := !a.logged[k] && len(a.logged) < 1024
	if fresh {
		a.logged[k] = true
	}
	a.loggedMu.Unlock()
	if fresh {
		a.log.Warn("refused gossip member", "member", p.Name, "addr", p.Addr, "reason", err)
	}
}

// SetIdentities installs the registered hosts; from then on only agent
// members matching one count, here and in Peers.
func (m *Member) SetIdentities(ids map[string]Identity) {
	m.admit.set(ids)
	m.signal()
}

// KnowsIdentities reports whether the member holds the registered hosts.
// Members refused before it did come back with their next alive message,
// or at once by joining a peer again.
func (m *Member) KnowsIdentities() bool {
	m.admit.mu.RLock()
	defer m.admit.mu.RUnlock()
	return m.admit.known
}

// Refused lists the members known to memberlist's view here that the
// admission rule refuses (registered later, or changed since), with why.
func (m *Member) Refused() map[string]error {
	out := map[string]error{}
	for _, p := range m.view.snapshot(timeNow(), m.suspectTTL(m.ml.NumMembers())) {
		if err := m.admit.check(p); err != nil {
			out[p.Name] = err
		}
	}
	return out
}
