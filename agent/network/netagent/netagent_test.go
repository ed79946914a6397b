package netagent

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/pkg/api"
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

// TestHoldUnfiltered: while the security group table is not in force, the
// local endpoints of ports with groups are held (not plugged), the others
// (no port security, or on another host) are not.
func TestHoldUnfiltered(t *testing.T) {
	st := network.HostState{Host: "h1", Hold: map[string]bool{},
		Ports: []network.Port{
			{ID: "a.web", Host: "h1", SecurityGroups: []string{"a.g"}},
			{ID: "a.open", Host: "h1"},
			{ID: "a.far", Host: "h2", SecurityGroups: []string{"a.g"}},
		},
		LocalEndpoints: []network.Endpoint{{PortID: "a.web"}, {PortID: "a.open"}},
	}
	own := map[string]api.Key{"port/a.web": {Kind: "port", Project: "a", Name: "web"}}
	got := holdUnfiltered(st, own)
	if len(got) != 1 || got[0].Name != "web" || !st.Held("port", "a.web") || st.Held("port", "a.open") || st.Held("port", "a.far") {
		t.Fatalf("held %v, hold %v", got, st.Hold)
	}
}
