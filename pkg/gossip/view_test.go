package gossip

import (
	"bytes"
	"log"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// testNode builds a node as memberlist passes it to callbacks: State is
// always StateAlive there (hashicorp/memberlist#293), and a graceful leave
// shows only in the meta's leaving flag.
func testNode(t *testing.T, name string, meta Meta, st memberlist.NodeStateType) *memberlist.Node {
	t.Helper()
	meta.leaving = st == memberlist.StateLeft
	b, err := meta.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return &memberlist.Node{Name: name, Addr: net.ParseIP("10.1.2.3"), Port: 7946, Meta: b}
}

func TestViewTransitions(t *testing.T) {
	signals := 0
	v := newView("self", time.Hour, func() { signals++ })
	agent := Meta{Role: RoleAgent, Zone: "z1"}
	ttl := time.Minute

	type step struct {
		name      string
		do        func()
		wantState State
		wantSig   bool
	}
	steps := []step{
		{"join", func() { v.NotifyJoin(testNode(t, "a", agent, memberlist.StateAlive)) }, StateAlive, true},
		{"probe failed", func() { v.markSuspect("a") }, StateSuspect, true},
		{"suspected again", func() { v.markSuspect("a") }, StateSuspect, false},
		{"direct ack", func() { v.NotifyPingComplete(&memberlist.Node{Name: "a"}, 0, nil) }, StateAlive, true},
		{"ack when not suspect", func() { v.NotifyPingComplete(&memberlist.Node{Name: "a"}, 0, nil) }, StateAlive, false},
		{"suspect then declared dead", func() {
			v.markSuspect("a")
			v.NotifyLeave(testNode(t, "a", agent, memberlist.StateDead))
		}, StateDead, true},
		{"suspect ignored when dead", func() { v.markSuspect("a") }, StateDead, false},
		{"rejoin", func() { v.NotifyJoin(testNode(t, "a", agent, memberlist.StateAlive)) }, StateAlive, true},
		{"graceful leave", func() { v.NotifyLeave(testNode(t, "a", agent, memberlist.StateLeft)) }, StateLeft, true},
	}
	for _, s := range steps {
		before := signals
		s.do()
		peers := v.snapshot(time.Now(), ttl)
		if len(peers) != 1 || peers[0].State != s.wantState {
			t.Fatalf("%s: peers %+v, want one in state %s", s.name, peers, s.wantState)
		}
		if got := signals > before; got != s.wantSig {
			t.Errorf("%s: signalled %v, want %v", s.name, got, s.wantSig)
		}
		p := peers[0]
		p.Meta.leaving = false
		if p.Addr != netip.MustParseAddrPort("10.1.2.3:7946") || !p.Meta.Equal(agent) || p.MetaErr != nil {
			t.Fatalf("%s: peer %+v", s.name, p)
		}
	}
}

func TestViewUpdateKeepsStateSince(t *testing.T) {
	v := newView("self", time.Hour, func() {})
	v.NotifyJoin(testNode(t, "a", Meta{Role: RoleAgent}, memberlist.StateAlive))
	since := v.snapshot(time.Now(), time.Minute)[0].StateSince
	v.NotifyUpdate(testNode(t, "a", Meta{Role: RoleAgent, AppliedEpoch: 7}, memberlist.StateAlive))
	p := v.snapshot(time.Now(), time.Minute)[0]
	if p.Meta.AppliedEpoch != 7 || !p.StateSince.Equal(since) {
		t.Fatalf("after update: %+v, want epoch 7 and StateSince %v", p, since)
	}
}

func TestViewReapAndSuspectExpiry(t *testing.T) {
	v := newView("self", time.Hour, func() {})
	meta := Meta{Role: RoleAgent}
	v.NotifyJoin(testNode(t, "alive", meta, memberlist.StateAlive))
	v.NotifyJoin(testNode(t, "susp", meta, memberlist.StateAlive))
	v.NotifyJoin(testNode(t, "dead", meta, memberlist.StateAlive))
	v.NotifyLeave(testNode(t, "dead", meta, memberlist.StateDead))
	v.NotifyJoin(testNode(t, "left", meta, memberlist.StateAlive))
	v.NotifyLeave(testNode(t, "left", meta, memberlist.StateLeft))
	v.markSuspect("susp")
	v.markSuspect("self") // never suspect ourselves

	names := func(ps []Peer) string {
		var b strings.Builder
		for _, p := range ps {
			b.WriteString(p.Name + "=" + string(p.State) + " ")
		}
		return strings.TrimSpace(b.String())
	}
	now := time.Now()
	if got, want := names(v.snapshot(now.Add(59*time.Minute), 2*time.Hour)), "alive=alive dead=dead left=left susp=suspect"; got != want {
		t.Fatalf("before reap: %s, want %s", got, want)
	}
	if got, want := names(v.snapshot(now.Add(61*time.Minute), time.Minute)), "alive=alive susp=alive"; got != want {
		t.Fatalf("after reap: %s, want %s", got, want)
	}
}

func TestViewUndecodableMeta(t *testing.T) {
	v := newView("self", time.Hour, func() {})
	v.NotifyJoin(&memberlist.Node{Name: "x", Addr: net.ParseIP("::1"), Port: 1, Meta: []byte{99}})
	p := v.snapshot(time.Now(), time.Minute)[0]
	if p.MetaErr == nil || p.State != StateAlive {
		t.Fatalf("peer %+v: want alive with MetaErr", p)
	}
}

func TestLogBridgeSuspect(t *testing.T) {
	var suspected []string
	b := &logBridge{log: discardLogger(), onSuspect: func(n string) { suspected = append(suspected, n) }}
	l := log.New(b, "", 0)
	// Lines as memberlist v0.7.0 writes them.
	l.Printf("[INFO] memberlist: Suspect %s has failed, no acks received", "host 7")
	l.Printf("[DEBUG] memberlist: Failed UDP ping: %s (timeout reached)", "host-8")
	l.Printf("[INFO] memberlist: Marking %s as failed, suspect timeout reached (%d peer confirmations)", "host-7", 1)
	if len(suspected) != 1 || suspected[0] != "host 7" {
		t.Fatalf("suspected %q, want [host 7]", suspected)
	}
}

func TestLogBridgeLevels(t *testing.T) {
	var buf bytes.Buffer
	b := &logBridge{log: textLogger(&buf), onSuspect: func(string) {}}
	log.New(b, "", 0).Printf("[WARN] memberlist: Refuting a suspect message (from: x)")
	out := buf.String()
	if !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "memberlist_level=WARN") ||
		!strings.Contains(out, `msg="Refuting a suspect message (from: x)"`) {
		t.Fatalf("log output %q", out)
	}
}
