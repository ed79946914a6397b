package lab

import (
	"fmt"

	"github.com/strata-infra/strata/internal/testenv"
)

// TB is the part of testing.TB that UniqueConfig uses (*testing.T
// satisfies it), so that the lab package, which strata-lab links, does not
// import the testing package.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// UniqueConfig fills cfg's names and underlay subnet for a test: names from
// testenv.Tag (kind, the full pid and a per-process counter, e.g.
// "strata-t01xk31-h1", bridge "t01xk31br"), a subnet claimed from
// testenv.ClaimSubnet so that concurrent test processes never share one.
// It fails t when anything by those names exists already: a test never
// adopts what another left behind. The claim is released at cleanup.
func UniqueConfig(t TB, kind byte, cfg Config) Config {
	t.Helper()
	tag := testenv.Tag(kind)
	cfg.Prefix, cfg.Short, cfg.Bridge = "strata-"+tag, tag, tag+"br"
	subnet, release, err := testenv.ClaimSubnet()
	if err != nil {
		t.Fatalf("claim a test subnet: %v", err)
	}
	t.Cleanup(release)
	cfg.Subnet = subnet
	l := &Lab{Config: cfg}
	var taken []string
	for i := 1; i <= max(cfg.Hosts, 1); i++ {
		if ns := l.Namespace(i); nsExists(ns) {
			taken = append(taken, "namespace "+ns)
		}
		for _, link := range []string{fmt.Sprintf("%sh%d", tag, i), fmt.Sprintf("%sx%d", tag, i)} {
			if linkExists(link) {
				taken = append(taken, "link "+link)
			}
		}
	}
	for _, link := range []string{cfg.Bridge, l.extBridge(), tag + "xo"} {
		if linkExists(link) {
			taken = append(taken, "link "+link)
		}
	}
	if nsExists(l.ExternalNamespace()) {
		taken = append(taken, "namespace "+l.ExternalNamespace())
	}
	if len(taken) > 0 {
		t.Fatalf("refusing to reuse what exists under the test prefix %s: %v", tag, taken)
	}
	return cfg
}
