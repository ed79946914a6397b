package netspec

import (
	"net/netip"
	"strings"
	"testing"
)

// Whatever names the API accepts (project and resource names up to 63
// characters, any VNI, an agent netns_prefix up to its limit), every name
// a host derives fits the kernel's limit for its kind.
func TestDerivedNamesFitTheKernel(t *testing.T) {
	long := strings.Repeat("x", 63)
	ids := []string{ResourceID("p", "n"), ResourceID(long, long), ResourceID(long[:31], long)}
	var all []Name
	for _, vni := range []uint32{1, 5001, 1<<24 - 1} {
		all = append(all, NetworkNames(vni)...)
	}
	for _, id := range ids {
		if !ValidID(id) {
			t.Errorf("ResourceID gave %q, which hosts refuse", id)
		}
		all = append(all, PortNames(id)...)
		all = append(all, RouterNames(id, ids)...)
		all = append(all, GroupNames(id)...)
	}
	all = append(all, PhysnetNames(strings.Repeat("p", MaxPhysnetLen))...)
	for _, a := range []string{"255.255.255.255", "fd00::ffff:ffff:ffff:ffff"} {
		all = append(all, Name{LinkName, TunnelPortName(true, netip.MustParseAddr(a))}, Name{LinkName, TunnelPortName(false, netip.MustParseAddr(a))})
	}
	for _, n := range all {
		if err := n.Check(); err != nil {
			t.Error(err)
		}
	}
	if err := (Name{LinkName, ProviderBridge(strings.Repeat("p", MaxPhysnetLen+1))}).Check(); err == nil {
		t.Error("a 16-byte link name passed its check")
	}
}

// The names are the ones hosts already carry: changing one would orphan
// every link, namespace and nft object made under the old name.
func TestDerivedNamesAreStable(t *testing.T) {
	for got, want := range map[string]string{
		BridgeName(5001):                  "sbr-5001",
		VXLANName(5001):                   "svx-5001",
		DHCPVethName(5001):                "sdh-5001",
		PatchOVSName(7):                   "spo-7",
		PatchLinuxName(7):                 "spl-7",
		DHCPNamespace("strata-", "n5"):    "strata-dhcp-n5",
		EndpointNamespace("s-", "p.a"):    "s-ep-p.a",
		RouterNamespace("strata-", "p.r"): "strata-r-p.r",
		EndpointVethName("p.a"):           "sep-" + LinkKey("p.a"),
		TapName("p.a"):                    "stp-" + LinkKey("p.a"),
		RouterGatewayLeg("p.r"):           "srg-" + hash11("p.r"),
		RouterInternalLeg("p.r", "p.i"):   "sri-" + hash11("p.r/p.i"),
		RouterInnerLeg("p.i"):             "qr-" + hash11("p.i"),
		RouterInnerGatewayLeg("p.r"):      "qg-" + hash11("p.r"),
		GroupSetName("p.g"):               "gm_" + hashFull("p.g"),
		PortEgressChain("p.a"):            "o_" + hashFull("p.a"),
		PortIngressChain("p.a"):           "i_" + hashFull("p.a"),
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}
