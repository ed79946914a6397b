package gossip

import (
	"io"
	"log"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// plainMemberlist is a member without any key, as an attacker on the
// underlay would run it: raw memberlist, agent meta of its choosing.
func plainMemberlist(t *testing.T, name string, port int, meta Meta) *memberlist.Memberlist {
	t.Helper()
	mc := memberlist.DefaultLocalConfig()
	mc.Name, mc.BindAddr, mc.BindPort, mc.AdvertisePort = name, "127.0.0.1", port, port
	mc.Logger = log.New(io.Discard, "", 0)
	buf, err := meta.Encode()
	if err != nil {
		t.Fatal(err)
	}
	mc.Delegate = staticMeta(buf)
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ml.Shutdown() })
	return ml
}

type staticMeta []byte

func (s staticMeta) NodeMeta(int) []byte           { return s }
func (staticMeta) NotifyMsg([]byte)                {}
func (staticMeta) GetBroadcasts(int, int) [][]byte { return nil }
func (staticMeta) LocalState(bool) []byte          { return nil }
func (staticMeta) MergeRemoteState([]byte, bool)   {}

func TestKeylessMemberNeverJoins(t *testing.T) {
	pp := freePort(t)
	pool := startMember(t, "pool", pp, agentMeta("pool", 1), nil)
	big := agentMeta("evil", 1)
	big.VCPUs = 4096
	evil := plainMemberlist(t, "evil", freePort(t), big)
	if n, err := evil.Join([]string{addrOf(pp)}); err == nil {
		t.Fatalf("keyless Join succeeded (%d contacted)", n)
	}
	// And the other way: the keyed member cannot pull it in either.
	ep := evil.LocalNode().Port
	if _, err := pool.Join([]string{addrOf(int(ep))}); err == nil {
		t.Fatal("keyed member joined a keyless one")
	}
	if _, ok := peer(pool, "evil"); ok {
		t.Fatal("pool sees the keyless member")
	}
}

func TestAdmissionRule(t *testing.T) {
	a := &admission{local: "self", log: discardLogger(), logged: map[string]bool{}}
	reg := map[string]Identity{"h1": {Addr: netip.MustParseAddr("127.0.0.1"), VTEP: netip.MustParseAddr("10.0.0.1")},
		"coord": {Addr: netip.MustParseAddr("127.0.0.5"), Coordinator: true}}
	at := func(name, addr string, role Role, vtep string) Peer {
		p := Peer{Name: name, Addr: netip.AddrPortFrom(netip.MustParseAddr(addr), 7946), Meta: Meta{Role: role}}
		if vtep != "" {
			p.Meta.VTEP = netip.MustParseAddr(vtep)
		}
		return p
	}
	if err := a.check(at("h9", "127.0.0.9", RoleAgent, "")); err != nil {
		t.Fatalf("before any registry every keyed member counts: %v", err)
	}
	// An agent admits by registration only: before it holds the
	// registry (its first plan), no agent member counts, coordinators do.
	strict := &admission{local: "self", log: discardLogger(), logged: map[string]bool{}, registeredOnly: true}
	if err := strict.check(at("h1", "127.0.0.1", RoleAgent, "10.0.0.1")); err == nil {
		t.Fatal("registered-only admission took an agent member before the registry")
	}
	if err := strict.check(at("coord", "127.0.0.5", RoleCoordinator, "")); err != nil {
		t.Fatalf("registered-only admission refused a coordinator: %v", err)
	}
	strict.set(reg)
	if err := strict.check(at("h1", "127.0.0.1", RoleAgent, "10.0.0.1")); err != nil {
		t.Fatalf("registered-only admission refused a registered host: %v", err)
	}
	a.set(reg)
	for _, c := range []struct {
		p  Peer
		ok bool
	}{
		{at("h1", "127.0.0.1", RoleAgent, "10.0.0.1"), true},
		{at("self", "127.0.0.5", RoleAgent, ""), true},
		{at("coord", "127.0.0.5", RoleCoordinator, ""), true},
		{at("h1", "127.0.0.2", RoleAgent, "10.0.0.1"), false},  // another address
		{at("h1", "127.0.0.1", RoleAgent, "10.0.0.66"), false}, // another VTEP
		{at("h2", "127.0.0.2", RoleAgent, "10.0.0.2"), false},  // not registered
		{at("h1", "127.0.0.1", RoleCoordinator, ""), false},    // a coordinator named like a host
		{at("coord", "127.0.0.6", RoleCoordinator, ""), false}, // a coordinator from another address
		{at("c2", "127.0.0.5", RoleCoordinator, ""), false},    // a coordinator not registered
		{at("coord", "127.0.0.5", RoleAgent, ""), false},       // an agent named like a coordinator
		{Peer{Name: "h1", Addr: netip.MustParseAddrPort("127.0.0.1:1"), MetaErr: io.EOF}, false},
	} {
		if err := a.check(c.p); (err == nil) != c.ok {
			t.Errorf("check(%+v) = %v, want ok=%v", c.p, err, c.ok)
		}
	}
}

// TestImpostorCannotTakeARegisteredName: a keyed member that claims a
// registered host's name from another address is refused by memberlist
// itself, so when the real host comes back it gets its name.
func TestImpostorCannotTakeARegisteredName(t *testing.T) {
	pp := freePort(t)
	pool := startMember(t, "pool", pp, Meta{Role: RoleCoordinator}, nil)
	vtep := netip.MustParseAddr("10.0.0.1")
	pool.SetIdentities(map[string]Identity{"h1": {Addr: netip.MustParseAddr("127.0.0.1"), VTEP: vtep}})

	// The impostor binds another loopback address.
	ip := freePort(t)
	imeta := agentMeta("h1", 1)
	imeta.VCPUs, imeta.VTEP = 4096, netip.MustParseAddr("10.6.6.6")
	imp, err := New(Config{Name: "h1", BindAddr: "127.0.0.2", BindPort: ip, Key: testKey, Profile: ProfileLocal, Logger: discardLogger(), Meta: imeta})
	if err != nil {
		t.Fatal(err)
	}
	defer imp.Shutdown()
	// Its join reaches the pool (the key is right), but the pool refuses
	// its alive message.
	if _, err := imp.Join([]string{addrOf(pp)}); err != nil {
		t.Fatalf("impostor join: %v", err)
	}
	waitFor(t, 5*time.Second, "impostor sees the pool", func() bool { _, ok := peer(imp, "pool"); return ok })
	if _, ok := peer(pool, "h1"); ok {
		t.Fatal("pool admitted the impostor")
	}
	if r := pool.Refused(); len(r) != 0 {
		t.Fatalf("impostor reached memberlist's view: %v", r)
	}
	imp.Shutdown()

	// The real h1 joins under its name and is admitted.
	real := agentMeta("h1", 1)
	real.VTEP = vtep
	h1 := startMember(t, "h1", freePort(t), real, nil)
	if _, err := h1.Join([]string{addrOf(pp)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "real h1 alive in the pool", func() bool { return seesAlive(pool, "h1", real) })
}

// TestKeyRotationWithoutRestart rotates a running pool to a new key in
// three steps and checks a member holding only the old key is then out.
func TestKeyRotationWithoutRestart(t *testing.T) {
	ms, ports := startPool(t, 3, nil)
	newKey, _ := GenerateKey()
	step := func(keys [][]byte, primary []byte) {
		for _, m := range ms {
			if err := m.SetKeys(keys, primary); err != nil {
				t.Fatal(err)
			}
		}
	}
	step([][]byte{testKey, newKey}, testKey)
	step([][]byte{testKey, newKey}, newKey)
	step([][]byte{newKey}, newKey)
	keys, primary := ms[2].Keys()
	if len(keys) != 1 || string(primary) != string(newKey) {
		t.Fatalf("keyring after rotation: %d keys, primary new=%v", len(keys), string(primary) == string(newKey))
	}
	if err := ms[0].UpdateMeta(func(m *Meta) { m.AppliedEpoch = 9 }); err != nil {
		t.Fatal(err)
	}
	want := agentMeta("node-0", 9)
	waitFor(t, 5*time.Second, "meta over the new key", func() bool { return seesAlive(ms[2], "node-0", want) })

	old := startMember(t, "stale", freePort(t), agentMeta("stale", 1), testKey)
	if _, err := old.Join([]string{addrOf(ports[0])}); err == nil {
		t.Fatal("a member with only the old key joined")
	}
	if err := ms[0].SetKeys([][]byte{newKey}, testKey); err == nil {
		t.Fatal("SetKeys took a primary outside the keyring")
	}
}

// TestCoordinatorNameBound: a coordinator's gossip name is bound to its
// registered address like a host's. With real memberlist, a keyed member
// claiming the coordinator role under a name no coordinator registered, or
// a registered coordinator's name from another address, is refused by the
// pool's coordinator and by an agent; an agent-role member cannot take the
// coordinator's name either; the real coordinator, joining after the
// impostor of its name, is admitted under it.
func TestCoordinatorNameBound(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	ids := map[string]Identity{
		"c1": {Addr: lo, Coordinator: true},
		"c2": {Addr: lo, Coordinator: true},
		"h1": {Addr: lo, VTEP: netip.MustParseAddr("10.0.0.1")},
	}
	cp := freePort(t)
	c1 := startMember(t, "c1", cp, Meta{Role: RoleCoordinator}, nil)
	c1.SetIdentities(ids)
	h1, err := New(Config{Name: "h1", BindAddr: "127.0.0.1", BindPort: freePort(t), Key: testKey, Profile: ProfileLocal,
		Logger: discardLogger(), Meta: agentMeta("h1", 1), Identities: ids, RegisteredOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h1.Shutdown() })
	if _, err := h1.Join([]string{addrOf(cp)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "h1 and c1 see each other", func() bool {
		_, a := peer(c1, "h1")
		_, b := peer(h1, "c1")
		return a && b
	})
	impostor := func(name, addr string, role Role) {
		t.Helper()
		meta := Meta{Role: role, APIAddr: "https://203.0.113.66:8443"}
		if role == RoleAgent {
			meta = agentMeta(name, 1)
		}
		m, err := New(Config{Name: name, BindAddr: addr, BindPort: freePort(t), Key: testKey, Profile: ProfileLocal, Logger: discardLogger(), Meta: meta})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Shutdown()
		if _, err := m.Join([]string{addrOf(cp)}); err != nil {
			t.Fatalf("impostor %s join: %v", name, err)
		}
		// It reaches the pool (its key is right) and hears the members,
		// so its own alive message has gone out to them.
		waitFor(t, 10*time.Second, "impostor "+name+" hears h1", func() bool { _, ok := peer(m, "h1"); return ok })
		// The agent pulling it in directly is refused the same way.
		_, _ = h1.Join([]string{m.LocalAddr().String()})
		for _, v := range []*Member{c1, h1} {
			if p, ok := peer(v, name); ok && p.Addr == m.LocalAddr() {
				t.Errorf("%s admitted impostor %s (%s from %s)", v.Name(), name, role, addr)
			}
			if r := v.Refused(); len(r) != 0 {
				t.Errorf("impostor reached %s's memberlist view: %v", v.Name(), r)
			}
		}
	}
	impostor("c9", "127.0.0.1", RoleCoordinator) // not a registered coordinator
	impostor("c2", "127.0.0.2", RoleCoordinator) // c2's name from another address
	impostor("c1", "127.0.0.3", RoleAgent)       // an agent taking a coordinator's name

	// The real c2 comes and gets its name.
	c2 := startMember(t, "c2", freePort(t), Meta{Role: RoleCoordinator}, nil)
	c2.SetIdentities(ids)
	if _, err := c2.Join([]string{addrOf(cp)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "real c2 alive at c1 and h1", func() bool {
		p1, a := peer(c1, "c2")
		p2, b := peer(h1, "c2")
		return a && b && p1.State == StateAlive && p2.State == StateAlive
	})
}
