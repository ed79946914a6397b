package membership

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/gossip"
)

type peers []gossip.Peer

func (p peers) Peers() []gossip.Peer { return p }

func TestHostsKeepsAgentsWithLiveness(t *testing.T) {
	v := View{Peers: peers{
		{Name: "coord", State: gossip.StateAlive, Meta: gossip.Meta{Role: gossip.RoleCoordinator}},
		{Name: "h1", State: gossip.StateAlive, Addr: netip.MustParseAddrPort("10.0.0.1:7946"),
			Meta: gossip.Meta{Role: gossip.RoleAgent, Zone: "z1", VTEP: netip.MustParseAddr("10.0.0.1"), VCPUs: 8, RAMMiB: 4096, DiskGiB: 100, AppliedEpoch: 7}},
		{Name: "h2", State: gossip.StateDead, Meta: gossip.Meta{Role: gossip.RoleAgent}},
		{Name: "h3", State: gossip.StateSuspect, MetaErr: errors.New("bad version")},
	}}
	hs := v.Hosts()
	if len(hs) != 3 {
		t.Fatalf("hosts %+v, want h1 h2 h3", hs)
	}
	h1 := hs[0]
	if h1.Name != "h1" || h1.State != "alive" || h1.VTEP != "10.0.0.1" || h1.Capacity.RAMMiB != 4096 || h1.AppliedEpoch != 7 || h1.Zone != "z1" || h1.Addr != "10.0.0.1:7946" {
		t.Fatalf("h1 %+v", h1)
	}
	if hs[1].State != "dead" || hs[2].State != "suspect" {
		t.Fatalf("states %s %s", hs[1].State, hs[2].State)
	}
}

func TestSchedulerHosts(t *testing.T) {
	got := SchedulerHosts([]api.Host{
		{Name: "a", State: api.StateAlive, Zone: "az1", Drained: true, Arch: "x86_64", Physnets: []string{"physnet1"}, Aggregates: []string{"fast"}, Hypervisor: "qemu",
			Storage: []string{"rbd:volumes"}, Capacity: api.Capacity{VCPUs: 4, RAMMiB: 2048, DiskGiB: 20}},
		{Name: "b", State: api.StateSuspect},
	})
	if len(got) != 2 || got[0].Name != "a" || !got[0].Alive || !got[0].Drained || got[0].Zone != "az1" || got[0].Arch != "x86_64" ||
		got[0].Physnets[0] != "physnet1" || len(got[0].Aggregates) != 1 || got[0].Hypervisor != "qemu" || got[0].Aggregates[0] != "fast" || got[0].Capacity.RAMMiB != 2048 || got[1].Alive ||
		len(got[0].Storage) != 1 || got[0].Storage[0] != "rbd:volumes" {
		t.Fatalf("SchedulerHosts = %+v", got)
	}
}
