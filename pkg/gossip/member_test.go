package gossip

import (
	"fmt"
	"github.com/strata-infra/strata/internal/testenv"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"
)

var (
	portsMu sync.Mutex
	used    = map[int]bool{}
)

// freePort finds a loopback port free for both TCP and UDP (memberlist
// binds both) and never hands the same port out twice in this process.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		portsMu.Lock()
		taken := used[port]
		used[port] = true
		portsMu.Unlock()
		if !taken {
			return port
		}
	}
	t.Fatal("no free loopback port for TCP and UDP")
	return 0
}

func agentMeta(name string, epoch uint64) Meta {
	return Meta{Role: RoleAgent, Zone: "z1", Aggregates: []string{"ssd"},
		VTEP: netip.MustParseAddr("10.0.0.1"), VCPUs: 32, RAMMiB: 65536,
		DiskGiB: 900, AppliedEpoch: epoch, APIAddr: "", Drained: false}
}

// testKey is the pool key of tests that pass none.
var testKey = []byte("0123456789abcdef0123456789abcdef")

func startMember(t *testing.T, name string, port int, meta Meta, key []byte) *Member {
	t.Helper()
	if key == nil {
		key = testKey
	}
	m, err := New(Config{Name: name, BindAddr: "127.0.0.1", BindPort: port,
		Key: key, Profile: ProfileLocal, Logger: discardLogger(), Meta: meta})
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() { m.Shutdown() })
	return m
}

func addrOf(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// startPool starts n members and joins them all through the first.
func startPool(t *testing.T, n int, key []byte) ([]*Member, []int) {
	t.Helper()
	var ms []*Member
	var ports []int
	for i := range n {
		port := freePort(t)
		name := fmt.Sprintf("node-%d", i)
		ms = append(ms, startMember(t, name, port, agentMeta(name, 1), key))
		ports = append(ports, port)
		if i > 0 {
			if _, err := ms[i].Join([]string{addrOf(ports[0])}); err != nil {
				t.Fatalf("join %s: %v", name, err)
			}
		}
	}
	return ms, ports
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	within = testenv.Scale(within)
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not true after %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func peer(m *Member, name string) (Peer, bool) {
	for _, p := range m.Peers() {
		if p.Name == name {
			return p, true
		}
	}
	return Peer{}, false
}

func seesAlive(m *Member, name string, meta Meta) bool {
	p, ok := peer(m, name)
	return ok && p.State == StateAlive && p.MetaErr == nil && p.Meta.Equal(meta)
}

func converged(ms []*Member) bool {
	for _, m := range ms {
		for _, o := range ms {
			if !seesAlive(m, o.Name(), o.Meta()) {
				return false
			}
		}
	}
	return true
}

func TestPoolConvergesAndPropagatesMeta(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		key  []byte
	}{{"shared test key", nil}, {"fresh key", key}} {
		t.Run(tt.name, func(t *testing.T) {
			ms, ports := startPool(t, 3, tt.key)
			d := waitFor(t, 20*time.Second, "three members converge", func() bool { return converged(ms) })
			t.Logf("converged in %v", d)
			if p, _ := peer(ms[0], "node-2"); p.Addr != netip.MustParseAddrPort(addrOf(ports[2])) {
				t.Fatalf("node-2 address %v, want %s", p.Addr, addrOf(ports[2]))
			}

			events, cancel := ms[0].Subscribe()
			defer cancel()
			<-events // the initial signal
			start := time.Now()
			if err := ms[2].UpdateMeta(func(m *Meta) { m.AppliedEpoch = 42; m.Drained = true }); err != nil {
				t.Fatalf("UpdateMeta: %v", err)
			}
			want := ms[2].Meta()
			if want.AppliedEpoch != 42 || !want.Drained {
				t.Fatalf("local meta after update: %+v", want)
			}
			select {
			case <-events:
			case <-time.After(testenv.Scale(20 * time.Second)):
				t.Fatal("no change signal for a peer's meta update")
			}
			waitFor(t, 20*time.Second, "meta update propagates", func() bool {
				return seesAlive(ms[0], "node-2", want) && seesAlive(ms[1], "node-2", want)
			})
			t.Logf("meta update propagated to both peers in %v", time.Since(start))
			// Peer looks up one node as Peers shows it.
			if p, ok := ms[1].Peer("node-2"); !ok || p.State != StateAlive || !p.Meta.Equal(want) {
				t.Fatalf("Peer(node-2) = %+v, %v; want alive with %+v", p, ok, want)
			}
			if p, ok := ms[1].Peer("nobody"); ok {
				t.Fatalf("Peer(nobody) = %+v, want none", p)
			}
		})
	}
}

func TestUpdateMetaTooLargeKeepsOldMeta(t *testing.T) {
	m := startMember(t, "solo", freePort(t), agentMeta("solo", 1), nil)
	before := m.Meta()
	err := m.UpdateMeta(func(m *Meta) {
		for range 30 {
			m.Aggregates = append(m.Aggregates, "aggregate-with-a-long-name")
		}
	})
	if err == nil {
		t.Fatal("UpdateMeta accepted a meta over 512 bytes")
	}
	if got := m.Meta(); !got.Equal(before) {
		t.Fatalf("meta changed after a failed update: %+v", got)
	}
	if p, _ := peer(m, "solo"); !p.Meta.Equal(before) {
		t.Fatalf("advertised meta changed after a failed update: %+v", p.Meta)
	}
}

func TestFailureDetectionAndRestart(t *testing.T) {
	ms, ports := startPool(t, 3, nil)
	waitFor(t, 20*time.Second, "converge", func() bool { return converged(ms) })

	killed := time.Now()
	if err := ms[2].Shutdown(); err != nil {
		t.Fatal(err)
	}
	survivors := ms[:2]
	suspectAt := map[string]time.Duration{}
	deadAt := map[string]time.Duration{}
	waitFor(t, 30*time.Second, "killed node declared dead by both survivors", func() bool {
		for _, m := range survivors {
			p, _ := peer(m, "node-2")
			switch _, seen := suspectAt[m.Name()]; {
			case p.State == StateSuspect && !seen:
				suspectAt[m.Name()] = time.Since(killed)
			case p.State == StateDead && deadAt[m.Name()] == 0:
				deadAt[m.Name()] = time.Since(killed)
			}
		}
		return len(deadAt) == len(survivors)
	})
	for _, m := range survivors {
		t.Logf("%s: node-2 suspect after %v, dead after %v", m.Name(), suspectAt[m.Name()], deadAt[m.Name()])
	}
	// Each survivor probes node-2 itself, so each should see it suspect
	// before dead; at least one must, or the suspicion signal is broken.
	if len(suspectAt) == 0 {
		t.Fatal("no survivor saw node-2 as suspect before dead")
	}
	if p, _ := peer(ms[0], "node-2"); p.StateSince.Before(killed) {
		t.Fatalf("dead StateSince %v precedes the kill at %v", p.StateSince, killed)
	}

	// Restart with the same name and address, and new meta.
	restartedMeta := agentMeta("node-2", 2)
	restartedMeta.VCPUs = 64
	start := time.Now()
	r := startMember(t, "node-2", ports[2], restartedMeta, nil)
	if _, err := r.Join([]string{addrOf(ports[0])}); err != nil {
		t.Fatalf("rejoin: %v", err)
	}
	waitFor(t, 20*time.Second, "restarted node alive with new meta", func() bool {
		return seesAlive(ms[0], "node-2", restartedMeta) && seesAlive(ms[1], "node-2", restartedMeta)
	})
	t.Logf("restarted node-2 alive with new meta after %v", time.Since(start))
}

func TestLeaveIsSeenAsLeft(t *testing.T) {
	ms, _ := startPool(t, 3, nil)
	waitFor(t, 20*time.Second, "converge", func() bool { return converged(ms) })
	start := time.Now()
	if err := ms[1].Leave(2 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	waitFor(t, 20*time.Second, "node-1 seen as left", func() bool {
		for _, m := range []*Member{ms[0], ms[2]} {
			if p, _ := peer(m, "node-1"); p.State != StateLeft {
				return false
			}
		}
		return true
	})
	t.Logf("leave seen by both peers after %v", time.Since(start))
	if err := ms[1].Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := ms[1].Leave(time.Second); err != ErrShutdown {
		t.Fatalf("Leave after Shutdown: %v, want ErrShutdown", err)
	}
}

func TestKeyMismatchDoesNotJoin(t *testing.T) {
	k1, _ := GenerateKey()
	k2, _ := GenerateKey()
	tests := []struct {
		name         string
		poolKey, key []byte
	}{
		{"different keys", k1, k2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pp := freePort(t)
			pool := startMember(t, "pool", pp, agentMeta("pool", 1), tt.poolKey)
			other := startMember(t, "other", freePort(t), agentMeta("other", 1), tt.key)
			if n, err := other.Join([]string{addrOf(pp)}); err == nil {
				t.Fatalf("Join succeeded (%d contacted), want an error", n)
			}
			time.Sleep(300 * time.Millisecond) // let any stray gossip land
			if _, ok := peer(pool, "other"); ok {
				t.Fatal("pool member sees the mismatched node")
			}
			if _, ok := peer(other, "pool"); ok {
				t.Fatal("mismatched node sees the pool member")
			}
		})
	}
}

func TestSubscribeAndShutdown(t *testing.T) {
	m := startMember(t, "solo", freePort(t), agentMeta("solo", 1), nil)
	ch, cancel := m.Subscribe()
	if _, ok := <-ch; !ok {
		t.Fatal("no initial signal")
	}
	for range 3 { // coalesces into one pending signal, never blocks
		if err := m.UpdateMeta(func(mt *Meta) { mt.AppliedEpoch++ }); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := <-ch; !ok {
		t.Fatal("no signal after meta updates")
	}
	select {
	case <-ch:
		t.Fatal("signals did not coalesce")
	default:
	}
	cancel()
	cancel() // idempotent
	ch2, _ := m.Subscribe()
	if err := m.Shutdown(); err != nil {
		t.Fatal(err)
	}
	<-ch2 // initial signal
	if _, ok := <-ch2; ok {
		t.Fatal("channel open after Shutdown")
	}
	if err := m.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := m.UpdateMeta(func(*Meta) {}); err != ErrShutdown {
		t.Fatalf("UpdateMeta after Shutdown: %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ok := agentMeta("x", 1)
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no name", Config{Meta: ok}},
		{"no role", Config{Name: "x", Meta: Meta{}}},
		{"bad profile", Config{Name: "x", Meta: ok, Profile: "wan"}},
		{"bad key", Config{Name: "x", Meta: ok, Key: []byte("short")}},
		{"no key", Config{Name: "x", Meta: ok}},
		{"bad extra key", Config{Name: "x", Meta: ok, Key: testKey, ExtraKeys: [][]byte{[]byte("short")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if m, err := New(tt.cfg); err == nil {
				m.Shutdown()
				t.Fatal("New succeeded")
			}
		})
	}
}
