package ovs

import (
	"net/netip"
	"strings"
	"testing"
)

// TestFlowsRendering pins the flows of one VXLAN network with two local
// ports and two remote hosts: tunnel classification, local VLAN, ARP
// answered locally, local MACs to their port and known remote ones to
// their tunnel, the rest flooded to the local ports and only the
// network's hosts; from a tunnel, only to local ports.
func TestFlowsRendering(t *testing.T) {
	nets := []FlowNetwork{{
		VNI: 5001, Type: TypeVXLAN, LVID: 3,
		Locals:  []FlowLocal{{Ofport: 8, MACs: []string{"02:00:00:00:00:02"}}, {Ofport: 7, MACs: []string{"02:00:00:00:00:01"}}},
		Unicast: map[string]int{"02:00:00:00:00:0b": 2, "02:00:00:00:00:0a": 1},
		Flood:   []int{2, 1},
		ARP:     map[netip.Addr]string{netip.MustParseAddr("10.0.0.11"): "02:00:00:00:00:0b"},
	}}
	tuns := []FlowTunnel{{Ofport: 2, Type: TypeVXLAN}, {Ofport: 1, Type: TypeVXLAN}, {Ofport: 4, Type: TypeGRE}}
	got := strings.Join(Flows(nets, tuns, nil), "\n")
	want := strings.Join([]string{
		"table=0,priority=0,actions=drop",
		"table=4,priority=0,actions=drop",
		"table=10,priority=0,actions=goto_table:20",
		"table=20,priority=0,actions=drop",
		"table=30,priority=0,actions=drop",
		"table=250,priority=0,actions=drop",
		"table=0,priority=100,in_port=1,actions=set_field:1->reg0,goto_table:4",
		"table=0,priority=100,in_port=2,actions=set_field:1->reg0,goto_table:4",
		"table=0,priority=100,in_port=4,actions=set_field:2->reg0,goto_table:4",
		"table=0,priority=100,in_port=7,actions=push_vlan:0x8100,set_field:4099->vlan_vid,goto_table:10",
		"table=0,priority=100,in_port=8,actions=push_vlan:0x8100,set_field:4099->vlan_vid,goto_table:10",
		"table=4,priority=100,reg0=1,tun_id=5001,actions=push_vlan:0x8100,set_field:4099->vlan_vid,goto_table:30",
		"table=10,priority=100,dl_vlan=3,arp,arp_op=1,arp_tpa=10.0.0.11,actions=move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[],set_field:02:00:00:00:00:0b->eth_src,set_field:2->arp_op,move:NXM_NX_ARP_SHA[]->NXM_NX_ARP_THA[],move:NXM_OF_ARP_SPA[]->NXM_OF_ARP_TPA[],set_field:02:00:00:00:00:0b->arp_sha,set_field:10.0.0.11->arp_spa,pop_vlan,IN_PORT",
		"table=20,priority=60,dl_vlan=3,dl_dst=02:00:00:00:00:01,actions=pop_vlan,output:7",
		"table=30,priority=60,dl_vlan=3,dl_dst=02:00:00:00:00:01,actions=pop_vlan,output:7",
		"table=20,priority=60,dl_vlan=3,dl_dst=02:00:00:00:00:02,actions=pop_vlan,output:8",
		"table=30,priority=60,dl_vlan=3,dl_dst=02:00:00:00:00:02,actions=pop_vlan,output:8",
		"table=20,priority=50,dl_vlan=3,dl_dst=02:00:00:00:00:0a,actions=pop_vlan,set_field:5001->tun_id,output:1",
		"table=20,priority=50,dl_vlan=3,dl_dst=02:00:00:00:00:0b,actions=pop_vlan,set_field:5001->tun_id,output:2",
		"table=20,priority=10,dl_vlan=3,actions=pop_vlan,output:7,output:8,set_field:5001->tun_id,output:1,output:2",
		"table=30,priority=10,dl_vlan=3,actions=pop_vlan,output:7,output:8",
		"table=40,priority=0,actions=drop",
		"table=41,priority=0,actions=drop",
		"table=50,priority=0,actions=drop",
		"table=51,priority=0,actions=drop",
	}, "\n")
	if got != want {
		t.Errorf("flows:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(got, "NORMAL") {
		t.Error("a flow uses NORMAL")
	}
	if FlowsHash(Flows(nets, tuns, nil)) != FlowsHash(Flows(nets, tuns, nil)) {
		t.Error("the same input hashes differently")
	}
	if c := WithCookie([]string{"table=0,priority=0,actions=drop"}, 7); c != "cookie=0x5354524100000007,table=0,priority=0,actions=drop\n" {
		t.Errorf("cookie rendering: %q", c)
	}
}

func TestTunnelName(t *testing.T) {
	for _, c := range []struct{ typ, ip, want string }{
		{TypeVXLAN, "172.30.0.2", "stv-ac1e0002"},
		{TypeGRE, "10.0.1.7", "stg-0a000107"},
	} {
		if got := tunnelName(c.typ, netip.MustParseAddr(c.ip)); got != c.want {
			t.Errorf("tunnelName(%s, %s) = %s, want %s", c.typ, c.ip, got, c.want)
		}
	}
	if n := tunnelName(TypeGRE, netip.MustParseAddr("fd00::1")); len(n) > 15 {
		t.Errorf("IPv6 tunnel name %q is longer than IFNAMSIZ", n)
	}
}
