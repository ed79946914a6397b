package netagent

import (
	"testing"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/ovs"
	"github.com/strata-infra/strata/agent/plan"
)

// TestBindingPerPort: on an Open vSwitch host every NIC plugs into the
// integration bridge (libvirt's virtualport), one with security groups
// too (the bridge's flows filter it); one with groups gets none while the
// group table is not in force.
func TestBindingPerPort(t *testing.T) {
	s := newResourceStatus()
	n := network.Network{ID: "n5001", VNI: 5001}
	n.L2 = ovs.Binding(n)
	st := network.HostState{Host: "h1", Networks: []network.Network{n}, Ports: []network.Port{
		{ID: "open", NetworkID: n.ID, Host: "h1"},
		{ID: "guarded", NetworkID: n.ID, Host: "h1", SecurityGroups: []string{"web"}},
	}}
	h := &plan.Host{Snapshot: &plan.Snapshot{}}
	s.pass(h, st, nil, true)
	for _, c := range []struct {
		port, bridge string
		typ          network.L2Type
	}{
		{"open", ovs.DefaultBridge, network.L2OpenVSwitch},
		{"guarded", ovs.DefaultBridge, network.L2OpenVSwitch},
	} {
		b, err := s.binding(n.ID, c.port)
		if err != nil || b.Bridge != c.bridge || b.Type != c.typ {
			t.Errorf("port %s: binding %+v (%v), want %s on %s", c.port, b, err, c.typ, c.bridge)
		}
	}
	s.pass(h, st, nil, false)
	if _, err := s.binding(n.ID, "guarded"); err == nil {
		t.Error("a port with groups got a binding while the group table is not in force")
	}
}
