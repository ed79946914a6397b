package registry

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netspec"
)

// TestPortLinkNamesNeverCollide: a port whose link key another port of
// any project already has is refused, so no two ports ever share a tap or
// endpoint veth on a host. The real key is 44 bits; a 1-hex-digit key
// stands in so clashes happen at once.
func TestPortLinkNamesNeverCollide(t *testing.T) {
	short := func(id string) string { return netspec.LinkKey(id)[:1] }
	var ports []api.Key
	keys := map[string]api.Key{}
	refused := 0
	for i := 0; i < 200; i++ {
		r := api.Resource{Kind: "port", Project: fmt.Sprintf("p%d", i%7), Name: fmt.Sprintf("port-%d", i)}
		err := linkKeyFree(ports, r, short)
		k := short(netspec.ResourceID(r.Project, r.Name))
		if o, clash := keys[k]; clash {
			if _, ok := err.(*Conflict); !ok {
				t.Fatalf("port %s shares link key %s with %s but was admitted (err %v)", r.Key(), k, o, err)
			}
			refused++
			continue
		}
		if err != nil {
			t.Fatalf("port %s refused with a free link key: %v", r.Key(), err)
		}
		keys[k] = r.Key()
		ports = append(ports, r.Key())
		// Updating an admitted port never clashes with itself.
		if err := linkKeyFree(ports, r, short); err != nil {
			t.Fatalf("port %s clashes with itself: %v", r.Key(), err)
		}
	}
	if refused == 0 || len(keys) != 16 {
		t.Fatalf("refused %d, admitted %d keys; want some refused and all 16 keys taken", refused, len(keys))
	}
}

// TestAllocateGoesOnFromTheLastAddress: the search goes on after the last
// address taken in its pool, and a pool listed before it but lower is
// still searched (pools need not be in order).
func TestAllocateGoesOnFromTheLastAddress(t *testing.T) {
	pools := []api.IPRange{{Start: "10.0.0.50", End: "10.0.0.51"}, {Start: "10.0.0.10", End: "10.0.0.12"}}
	taken := map[netip.Addr]bool{}
	var got []string
	after := netip.Addr{}
	for {
		a, err := allocateFrom(pools, taken, netip.MustParseAddr("10.0.0.11"), after)
		if err != nil {
			break
		}
		taken[a], after = true, a
		got = append(got, a.String())
	}
	if want := "[10.0.0.50 10.0.0.51 10.0.0.10 10.0.0.12]"; fmt.Sprint(got) != want {
		t.Fatalf("allocated %v, want %s", got, want)
	}
}
