package linuxbridge

import (
	"net"
	"net/netip"
	"reflect"
	"testing"

	"github.com/strata-infra/strata/agent/network"
)

var (
	vtep2 = netip.MustParseAddr("172.30.0.2")
	vtep3 = netip.MustParseAddr("172.30.0.3")
	mac1  = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	mac2  = net.HardwareAddr{2, 0, 0, 0, 0, 2}
)

func TestBuildPlan(t *testing.T) {
	st := network.HostState{
		Host: "h1", LocalVTEP: netip.MustParseAddr("172.30.0.1"),
		Networks: []network.Network{{ID: "a", VNI: 5001}, {ID: "b", VNI: 6001}},
		Ports: []network.Port{
			{ID: "local", NetworkID: "a", MAC: mac1, Host: "h1"},
			{ID: "p2", NetworkID: "a", MAC: mac2, Host: "h2", IPs: []netip.Addr{netip.MustParseAddr("10.1.1.2")}},
			{ID: "gone", NetworkID: "b", MAC: mac1, Host: "h9"},
			{ID: "p3", NetworkID: "b", MAC: mac2, Host: "h3", Owner: network.OwnerDHCP},
			{ID: "other", NetworkID: "zz", MAC: mac2, Host: "h2"},
		},
		RemoteVTEPs: map[string]netip.Addr{"h2": vtep2, "h3": vtep3},
	}
	got := BuildPlan(st)
	want := Plan{
		5001: {
			FDB:   map[string]netip.Addr{mac2.String(): vtep2},
			BUM:   map[netip.Addr]bool{vtep2: true},
			Neigh: map[netip.Addr]string{netip.MustParseAddr("10.1.1.2"): mac2.String()},
		},
		6001: {
			FDB:   map[string]netip.Addr{mac2.String(): vtep3},
			BUM:   map[netip.Addr]bool{vtep3: true},
			Neigh: map[netip.Addr]string{},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("BuildPlan:\n got %+v\nwant %+v", got, want)
	}
}

// TestBuildPlanIncomingPort: a port moving here live (Port.From) is
// local: no tunnel entry or ARP proxy speaks for it (after the guest
// resumes here they would send its traffic back to the source), but the
// source keeps the network's flood, where the guest runs until then.
func TestBuildPlanIncomingPort(t *testing.T) {
	st := network.HostState{
		Host: "h1", LocalVTEP: netip.MustParseAddr("172.30.0.1"),
		Networks: []network.Network{{ID: "a", VNI: 5001}},
		Ports: []network.Port{
			{ID: "moving", NetworkID: "a", MAC: mac1, Host: "h1", From: "h2", IPs: []netip.Addr{netip.MustParseAddr("10.1.1.1")}},
			{ID: "ep", NetworkID: "a", MAC: mac2, Host: "h1"},
		},
		RemoteVTEPs: map[string]netip.Addr{"h2": vtep2, "h3": vtep3},
	}
	want := Plan{5001: {FDB: map[string]netip.Addr{}, BUM: map[netip.Addr]bool{vtep2: true}, Neigh: map[netip.Addr]string{}}}
	if got := BuildPlan(st); !reflect.DeepEqual(got, want) {
		t.Fatalf("BuildPlan:\n got %+v\nwant %+v", got, want)
	}
}

func TestDiff(t *testing.T) {
	ip1, ip2 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	tests := []struct {
		name       string
		want, have Tunnel
		ops        []Op
	}{
		{"empty", newTunnel(), newTunnel(), nil},
		{
			name: "add all",
			want: Tunnel{FDB: map[string]netip.Addr{"m1": vtep2}, BUM: map[netip.Addr]bool{vtep2: true}, Neigh: map[netip.Addr]string{ip1: "m1"}},
			have: newTunnel(),
			ops:  []Op{{SetFDB, "m1", vtep2}, {AddBUM, "", vtep2}, {SetNeigh, "m1", ip1}},
		},
		{
			name: "port moved host, ip moved port, host left",
			want: Tunnel{FDB: map[string]netip.Addr{"m1": vtep3}, BUM: map[netip.Addr]bool{vtep3: true}, Neigh: map[netip.Addr]string{ip1: "m2"}},
			have: Tunnel{FDB: map[string]netip.Addr{"m1": vtep2, "m9": vtep2}, BUM: map[netip.Addr]bool{vtep2: true}, Neigh: map[netip.Addr]string{ip1: "m1", ip2: "m9"}},
			ops: []Op{
				{SetFDB, "m1", vtep3}, {AddBUM, "", vtep3}, {SetNeigh, "m2", ip1},
				{DelNeigh, "m9", ip2}, {DelBUM, "", vtep2}, {DelFDB, "m9", vtep2},
			},
		},
		{
			name: "in sync",
			want: Tunnel{FDB: map[string]netip.Addr{"m1": vtep2}, BUM: map[netip.Addr]bool{vtep2: true}, Neigh: map[netip.Addr]string{ip1: "m1"}},
			have: Tunnel{FDB: map[string]netip.Addr{"m1": vtep2}, BUM: map[netip.Addr]bool{vtep2: true}, Neigh: map[netip.Addr]string{ip1: "m1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Diff(tt.want, tt.have); !reflect.DeepEqual(got, tt.ops) {
				t.Errorf("Diff:\n got %v\nwant %v", got, tt.ops)
			}
		})
	}
}
