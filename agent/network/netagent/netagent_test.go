package netagent

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/strata-infra/strata/pkg/gossip"
)

func TestRemoteVTEPsFollowLiveness(t *testing.T) {
	v := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	peers := []gossip.Peer{
		{Name: "coord", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleCoordinator}},
		{Name: "h1", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleAgent, VTEP: v("10.0.0.1")}},
		{Name: "h2", State: gossip.StateSuspect, Meta: gossip.Meta{Role: gossip.RoleAgent, VTEP: v("10.0.0.2")}},
		{Name: "h3", State: gossip.StateDead, Meta: gossip.Meta{Role: gossip.RoleAgent, VTEP: v("10.0.0.3")}},
		{Name: "h4", State: gossip.StateLeft, Meta: gossip.Meta{Role: gossip.RoleAgent, VTEP: v("10.0.0.4")}},
		{Name: "h5", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleAgent}},
		{Name: "h6", State: gossip.StateAlive, MetaErr: errors.New("bad")},
	}
	got := RemoteVTEPs(peers)
	if len(got) != 2 || got["h1"] != v("10.0.0.1") || got["h2"] != v("10.0.0.2") {
		t.Fatalf("remote vteps %v", got)
	}
}
