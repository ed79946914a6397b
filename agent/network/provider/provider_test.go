package provider

import (
	"context"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/pkg/netnsutil"
)

func TestProviderBridgeIsIdempotentAndOwnsOnlyItsOwn(t *testing.T) {
	nettest.RequireRoot(t)
	ns := nettest.Prefix(t) + "host"
	if err := netnsutil.Create(ns); err != nil {
		t.Fatal(err)
	}
	h, err := netnsutil.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// ext0 stands in for the uplink; sbe-foreign is someone else's bridge.
	for _, l := range []netlink.Link{
		&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ext0"}, PeerName: "ext0p"},
		&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "sbe-foreign"}},
	} {
		if err := h.LinkAdd(l); err != nil {
			t.Fatalf("add %s: %v", l.Attrs().Name, err)
		}
	}
	d, err := New(Config{NetNS: ns, Mappings: map[string]string{"physnet1": "ext0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	if err := d.Set(ctx, network.HostState{}); err != nil {
		t.Fatal(err)
	}
	first := d.Changes()
	if err := d.Set(ctx, network.HostState{}); err != nil {
		t.Fatal(err)
	}
	if d.Changes() != first {
		t.Fatalf("second Set made %d changes", d.Changes()-first)
	}
	br, err := h.LinkByName("sbe-physnet1")
	if err != nil {
		t.Fatal(err)
	}
	ext, _ := h.LinkByName("ext0")
	if ext.Attrs().MasterIndex != br.Attrs().Index {
		t.Fatal("ext0 is not in the provider bridge")
	}
	// Unmapped: our bridge goes, the foreign one stays.
	d2, _ := New(Config{NetNS: ns})
	defer d2.Close()
	if err := d2.Set(ctx, network.HostState{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.LinkByName("sbe-physnet1"); err == nil {
		t.Fatal("unmapped provider bridge still there")
	}
	if _, err := h.LinkByName("sbe-foreign"); err != nil {
		t.Fatal("a bridge that is not Strata's was removed")
	}
	if _, err := New(Config{Mappings: map[string]string{"much-too-long-name": "x"}}); err == nil {
		t.Fatal("an over-long physical network name was accepted")
	}
}
