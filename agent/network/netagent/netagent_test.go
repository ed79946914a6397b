package netagent

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/gossip"
)

func TestRemoteVTEPsFollowLiveness(t *testing.T) {
	v := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	now := time.Now()
	peers := []gossip.Peer{
		{Name: "coord", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleCoordinator}},
		{Name: "h1", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleAgent, VTEP: v("10.0.0.1")}},
		{Name: "h2", State: gossip.StateSuspect, Meta: gossip.Meta{Role: gossip.RoleAgent, VTEP: v("10.0.0.2")}},
		{Name: "h3", State: gossip.StateDead, StateSince: now.Add(-time.Minute), Meta: gossip.Meta{Role: gossip.RoleAgent, VTEP: v("10.0.0.3")}},
		{Name: "h7", State: gossip.StateDead, StateSince: now.Add(-2 * time.Second), Meta: gossip.Meta{Role: gossip.RoleAgent, VTEP: v("10.0.0.7")}},
		{Name: "h4", State: gossip.StateLeft, Meta: gossip.Meta{Role: gossip.RoleAgent, VTEP: v("10.0.0.4")}},
		{Name: "h5", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleAgent}},
		{Name: "h6", State: gossip.StateAlive, MetaErr: errors.New("bad")},
	}
	got, next := RemoteVTEPs(peers, now, 5*time.Second)
	if len(got) != 4 || got["h1"] != v("10.0.0.1") || got["h2"] != v("10.0.0.2") || got["h4"] != v("10.0.0.4") || got["h7"] != v("10.0.0.7") {
		t.Fatalf("remote vteps %v", got)
	}
	if next != 3*time.Second {
		t.Fatalf("next grace expiry in %s, want 3s", next)
	}
	if got, next := RemoteVTEPs(peers, now.Add(4*time.Second), 5*time.Second); len(got) != 3 || next != 0 {
		t.Fatalf("after h7's grace: %v, next %s", got, next)
	}
}
