package gossip

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Profiles select memberlist timing.
const (
	// ProfileLAN is memberlist.DefaultLANConfig: 1 s probes; a failed host
	// is suspect within a few seconds and dead 4 s x max(1, log10(pool
	// size)) later when peers confirm (4 s at 10 hosts, 16 s at 10k), up
	// to 6x that without confirmations.
	ProfileLAN = "lan"
	// ProfileLocal is for tests and labs on one machine or a quiet LAN:
	// DefaultLocalConfig with ProbeInterval 300 ms, ProbeTimeout 150 ms,
	// SuspicionMult 3, SuspicionMaxTimeoutMult 4, PushPullInterval 5 s.
	// In a 3-node pool a killed node is suspect within about 0.3-1 s and
	// dead about 1-4 s later (the suspicion timeout is 3 probe intervals
	// when a second member confirms, up to 4x that without confirmations).
	ProfileLocal = "local"
)

// DefaultReapAfter is how long dead and left peers stay in Peers.
const DefaultReapAfter = 24 * time.Hour

// updateTimeout bounds how long UpdateMeta waits for the first broadcast.
const updateTimeout = 5 * time.Second

// ErrShutdown is returned by calls on a Member after Shutdown.
var ErrShutdown = errors.New("gossip member is shut down")

// Config describes a Member. Zero values take the profile's defaults.
type Config struct {
	Name          string // unique in the pool; required
	BindAddr      string // default 0.0.0.0
	BindPort      int    // default 7946
	AdvertiseAddr string // default: derived by memberlist from BindAddr
	AdvertisePort int    // default BindPort
	Key           []byte // 16, 24 or 32 bytes, the primary key; required
	// ExtraKeys also decrypt (a rotation under way when this member
	// started).
	ExtraKeys [][]byte
	// Identities, when not nil, are the registered hosts from the start
	// (see SetIdentities); nil admits every keyed member until then,
	// unless RegisteredOnly.
	Identities map[string]Identity
	// RegisteredOnly refuses every agent member until the registered
	// hosts are known: a host that starts without a plan admits nobody
	// on the gossip key alone, so nothing is accepted before it can check.
	RegisteredOnly bool
	Profile        string // ProfileLAN (default) or ProfileLocal
	Logger         *slog.Logger
	Meta           Meta
	ReapAfter      time.Duration // default DefaultReapAfter
	// Tune, when set, adjusts memberlist's configuration last: the scale
	// benchmark runs members over an in-process network (Transport) with
	// the profile's timers stretched. Daemons leave it nil.
	Tune func(*memberlist.Config)
}

// Member is this process's membership in the gossip pool.
type Member struct {
	name    string
	ml      *memberlist.Memberlist
	view    *view
	admit   *admission
	keyring *memberlist.Keyring
	// suspectTTL inputs, from the memberlist config.
	probeInterval         time.Duration
	suspicionMult, maxMul int

	metaMu  sync.Mutex // guards meta and metaBuf, read by memberlist
	meta    Meta
	metaBuf []byte

	updateMu sync.Mutex // serialises UpdateMeta

	life   sync.RWMutex // write-held by Shutdown
	closed bool

	subsMu     sync.Mutex
	subs       map[chan struct{}]struct{}
	subsClosed bool
}

func memberlistConfig(cfg Config) (*memberlist.Config, error) {
	var mc *memberlist.Config
	switch cfg.Profile {
	case "", ProfileLAN:
		mc = memberlist.DefaultLANConfig()
	case ProfileLocal:
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval = 300 * time.Millisecond
		mc.ProbeTimeout = 150 * time.Millisecond
		mc.SuspicionMult = 3
		mc.SuspicionMaxTimeoutMult = 4
		mc.PushPullInterval = 5 * time.Second
	default:
		return nil, fmt.Errorf("unknown gossip profile %q, want %q or %q", cfg.Profile, ProfileLAN, ProfileLocal)
	}
	// memberlist LZW-compresses every message by default, building a new
	// compressor (tables of tens of KiB) per packet: profiled at 500 and
	// 1,000 members that and the garbage it leaves were half of a member's
	// CPU, for packets of a few hundred bytes that barely shrink (see
	// README, gossip figures). Receivers still read compressed messages.
	mc.EnableCompression = false
	mc.Name = cfg.Name
	if cfg.BindAddr != "" {
		mc.BindAddr = cfg.BindAddr
	}
	if cfg.BindPort != 0 {
		mc.BindPort = cfg.BindPort
		mc.AdvertisePort = cfg.BindPort
	}
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	if cfg.AdvertisePort != 0 {
		mc.AdvertisePort = cfg.AdvertisePort
	}
	if len(cfg.Key) == 0 {
		return nil, ErrNoKey
	}
	for _, k := range append([][]byte{cfg.Key}, cfg.ExtraKeys...) {
		if err := checkKey(k); err != nil {
			return nil, err
		}
	}
	kr, err := memberlist.NewKeyring(cfg.ExtraKeys, cfg.Key)
	if err != nil {
		return nil, err
	}
	mc.Keyring = kr
	// Refuse anything not encrypted with a key of ours, both ways.
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	return mc, nil
}

func checkRole(r Role) error {
	if r != RoleAgent && r != RoleCoordinator {
		return fmt.Errorf("meta role is %s, want agent or coordinator", r)
	}
	return nil
}

// New starts memberlist (its listeners and timers) and returns the Member
// alone in its pool; call Join to meet others.
func New(cfg Config) (*Member, error) {
	if cfg.Name == "" {
		return nil, errors.New("new gossip member: empty name")
	}
	if err := checkRole(cfg.Meta.Role); err != nil {
		return nil, fmt.Errorf("new gossip member %q: %w", cfg.Name, err)
	}
	buf, err := cfg.Meta.Encode()
	if err != nil {
		return nil, fmt.Errorf("new gossip member %q: %w", cfg.Name, err)
	}
	mc, err := memberlistConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("new gossip member %q: %w", cfg.Name, err)
	}
	if cfg.Tune != nil {
		cfg.Tune(mc)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("subsystem", "gossip", "node", cfg.Name)
	reap := cfg.ReapAfter
	if reap <= 0 {
		reap = DefaultReapAfter
	}

	m := &Member{
		name:          cfg.Name,
		probeInterval: mc.ProbeInterval,
		suspicionMult: mc.SuspicionMult,
		maxMul:        mc.SuspicionMaxTimeoutMult,
		meta:          cfg.Meta.clone(),
		metaBuf:       buf,
		subs:          make(map[chan struct{}]struct{}),
	}
	m.view = newView(cfg.Name, reap, m.signal)
	m.keyring = mc.Keyring
	m.admit = &admission{local: cfg.Name, log: logger, logged: map[string]bool{}, registeredOnly: cfg.RegisteredOnly}
	if cfg.Identities != nil {
		m.admit.set(cfg.Identities)
	}
	mc.Alive = m.admit
	mc.Delegate = metaDelegate{m}
	mc.Events = m.view
	mc.Ping = m.view
	bridge := &logBridge{log: logger.With("component", "memberlist"), onSuspect: m.view.markSuspect}
	mc.Logger = log.New(bridge, "", 0)

	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("new gossip member %q on %s:%d: %w", cfg.Name, mc.BindAddr, mc.BindPort, err)
	}
	m.ml = ml
	return m, nil
}

// Name is the local node's name.
func (m *Member) Name() string { return m.name }

// LocalAddr is the address and port peers reach this member at.
func (m *Member) LocalAddr() netip.AddrPort {
	n := m.ml.LocalNode()
	a, _ := netip.AddrFromSlice(n.Addr)
	return netip.AddrPortFrom(a.Unmap(), n.Port)
}

// Join contacts the given host:port addresses and merges their view of the
// pool. It returns how many were reached; the error is set only if none was.
func (m *Member) Join(addrs []string) (int, error) {
	m.life.RLock()
	defer m.life.RUnlock()
	if m.closed {
		return 0, ErrShutdown
	}
	n, err := m.ml.Join(addrs)
	if err != nil {
		return n, fmt.Errorf("gossip member %q join %v: %w", m.name, addrs, err)
	}
	return n, nil
}

// Meta returns a copy of the local node's current meta.
func (m *Member) Meta() Meta {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	return m.meta.clone()
}

// UpdateMeta applies fn to a copy of the local meta and advertises the
// result. If the result does not encode (too large, bad role) the old meta
// stays in force. An error after that point means the new meta is in force
// locally and queued for gossip, but its first broadcast was not confirmed
// within 5 s.
func (m *Member) UpdateMeta(fn func(*Meta)) error {
	m.life.RLock()
	defer m.life.RUnlock()
	if m.closed {
		return ErrShutdown
	}
	return m.updateMeta(fn, updateTimeout)
}

// updateMeta is UpdateMeta for callers holding m.life.
func (m *Member) updateMeta(fn func(*Meta), timeout time.Duration) error {
	m.updateMu.Lock()
	defer m.updateMu.Unlock()

	next := m.Meta()
	fn(&next)
	if err := checkRole(next.Role); err != nil {
		return fmt.Errorf("update meta of %q: %w", m.name, err)
	}
	buf, err := next.Encode()
	if err != nil {
		return fmt.Errorf("update meta of %q: %w", m.name, err)
	}
	m.metaMu.Lock()
	m.meta, m.metaBuf = next.clone(), buf
	m.metaMu.Unlock()
	if err := m.ml.UpdateNode(timeout); err != nil {
		return fmt.Errorf("update meta of %q: %w", m.name, err)
	}
	return nil
}

// Peers returns every node this member knows and admits (see
// SetIdentities), itself included, sorted by name: alive and suspect ones,
// and dead or left ones until reaped.
func (m *Member) Peers() []Peer {
	all := m.view.snapshot(timeNow(), m.suspectTTL(m.ml.NumMembers()))
	out := all[:0]
	for _, p := range all {
		if m.admit.check(p) == nil {
			out = append(out, p)
		}
	}
	return out
}

var timeNow = time.Now

// Peer returns the one node named name as Peers would, without copying
// the others: a watcher of one host in a large pool costs O(1), not O(n).
func (m *Member) Peer(name string) (Peer, bool) {
	p, ok := m.view.get(name, timeNow(), m.suspectTTL(m.ml.NumMembers()))
	if !ok || m.admit.check(p) != nil {
		return Peer{}, false
	}
	return p, true
}

// suspectTTL is memberlist's longest suspicion timeout for a pool of n
// (state.go suspicionTimeout times SuspicionMaxTimeoutMult) plus one probe.
func (m *Member) suspectTTL(n int) time.Duration {
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	max := float64(m.maxMul*m.suspicionMult) * scale * float64(m.probeInterval)
	return time.Duration(max) + m.probeInterval
}

// Subscribe returns a channel that receives a signal after membership or
// meta changes. Signals coalesce (capacity 1) and never block memberlist;
// read Peers after each. The channel starts with one pending signal so the
// first read builds the initial state. cancel stops and closes it;
// Shutdown closes all channels.
func (m *Member) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	ch <- struct{}{}
	m.subsMu.Lock()
	defer m.subsMu.Unlock()
	if m.subsClosed {
		close(ch)
		return ch, func() {}
	}
	m.subs[ch] = struct{}{}
	cancel := func() {
		m.subsMu.Lock()
		defer m.subsMu.Unlock()
		if _, ok := m.subs[ch]; ok {
			delete(m.subs, ch)
			close(ch)
		}
	}
	return ch, cancel
}

// signal may run under memberlist's node lock, so it must not block.
func (m *Member) signal() {
	m.subsMu.Lock()
	defer m.subsMu.Unlock()
	for ch := range m.subs {
		select {
		case ch <- struct{}{}:
		default: // a signal is already pending
		}
	}
}

// Leave tells the pool this node is going away, waiting up to timeout for
// the messages to go out. Peers then see it as left rather than dead. The
// member keeps gossiping until Shutdown.
//
// memberlist does not tell peers' callbacks a leave from a failure, so Leave
// first advertises a leaving flag in the meta and waits for that broadcast
// (half the timeout at most), then sends memberlist's leave. A node that
// crashes between the two is reported as left, not dead.
func (m *Member) Leave(timeout time.Duration) error {
	m.life.RLock()
	defer m.life.RUnlock()
	if m.closed {
		return ErrShutdown // memberlist panics on Leave after Shutdown
	}
	start := time.Now()
	// A flag bit cannot overflow the meta; an unconfirmed broadcast still
	// leaves, and peers that missed the flag report dead.
	_ = m.updateMeta(func(mt *Meta) { mt.leaving = true }, timeout/2)
	if err := m.ml.Leave(max(timeout-time.Since(start), time.Millisecond)); err != nil {
		return fmt.Errorf("gossip member %q leave: %w", m.name, err)
	}
	return nil
}

// Shutdown stops memberlist's goroutines and listeners without a leave
// message (peers will declare this node dead) and closes subscriber
// channels. It is safe to call more than once.
func (m *Member) Shutdown() error {
	m.life.Lock()
	defer m.life.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	err := m.ml.Shutdown()
	m.subsMu.Lock()
	for ch := range m.subs {
		close(ch)
	}
	clear(m.subs)
	m.subsClosed = true
	m.subsMu.Unlock()
	if err != nil {
		return fmt.Errorf("gossip member %q shutdown: %w", m.name, err)
	}
	return nil
}

// metaDelegate hands memberlist the encoded local meta; the pool carries
// no user messages or push/pull state of ours.
type metaDelegate struct{ m *Member }

func (d metaDelegate) NodeMeta(limit int) []byte {
	d.m.metaMu.Lock()
	defer d.m.metaMu.Unlock()
	if len(d.m.metaBuf) > limit { // cannot happen: Encode enforces MetaMaxSize
		return nil
	}
	return d.m.metaBuf
}

func (metaDelegate) NotifyMsg([]byte)                {}
func (metaDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (metaDelegate) LocalState(bool) []byte          { return nil }
func (metaDelegate) MergeRemoteState([]byte, bool)   {}
