package contract

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netspec"
)

func router(project, name, ext string, subnets ...string) api.Resource {
	s := api.RouterSpec{ExternalNetwork: ext}
	for _, sub := range subnets {
		s.Interfaces = append(s.Interfaces, api.RouterInterface{Subnet: sub})
	}
	buf, _ := json.Marshal(s)
	return api.Resource{Kind: "router", Project: project, Name: name, Spec: buf}
}

// TestRouterLinkClashes: with names cut to one hex digit of their hash,
// routers across projects clash at once; every clash is reported against
// both routers with the field that makes the link, and the full names of
// the same routers never clash.
func TestRouterLinkClashes(t *testing.T) {
	short := func(s string) string { return s[:strings.IndexByte(s, '-')+2] }
	var rs []api.Resource
	for i := 0; i < 12; i++ {
		rs = append(rs, router(fmt.Sprintf("p%d", i%3), fmt.Sprintf("r%d", i), "ext", "a", "b"))
	}
	if v := RouterLinkClashes(rs, nil); len(v) != 0 {
		t.Fatalf("full names clash: %v", v)
	}
	v := RouterLinkClashes(rs, short)
	if len(v) == 0 {
		t.Fatal("12 routers with 16 possible names per kind of leg: no clash reported")
	}
	inner := 0
	for _, x := range v {
		if x.Key.Kind != "router" || (x.Field != "name" && !strings.HasPrefix(x.Field, "spec.interfaces[")) {
			t.Errorf("violation %v: want a router and its name or interface field", x)
		}
		if strings.Contains(x.Message, "namespace") {
			inner++
		}
	}
	// Every pair of routers with the same shortened gateway leg is named.
	gw := map[string][]api.Key{}
	for _, r := range rs {
		k := short(netspec.RouterGatewayLeg(netspec.ResourceID(r.Project, r.Name)))
		gw[k] = append(gw[k], r.Key())
	}
	for _, keys := range gw {
		for _, k := range keys {
			if len(keys) > 1 && !named(v, k, "name") {
				t.Errorf("router %s shares its gateway leg with %v but is not reported", k, keys)
			}
		}
	}
	// One router whose two interfaces clash inside its namespace.
	var one []api.Resource
	for i := 0; i < 40 && inner == 0; i++ {
		one = []api.Resource{router("p", "solo", "", fmt.Sprintf("s%d", i), fmt.Sprintf("t%d", i), fmt.Sprintf("u%d", i), fmt.Sprintf("v%d", i), fmt.Sprintf("w%d", i))}
		for _, x := range RouterLinkClashes(one, func(s string) string {
			if strings.HasPrefix(s, "qr-") {
				return s[:4]
			}
			return s
		}) {
			if strings.Contains(x.Message, "namespace") {
				inner++
			}
		}
	}
	if inner == 0 {
		t.Fatal("no clash of legs inside a router's namespace was ever reported")
	}
}

func named(v []Violation, k api.Key, field string) bool {
	for _, x := range v {
		if x.Key == k && x.Field == field {
			return true
		}
	}
	return false
}
