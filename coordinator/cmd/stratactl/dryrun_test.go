package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-infra/strata/coordinator/ctl"
	"github.com/strata-infra/strata/pkg/api"
)

// TestApplyDryRun: apply --dry-run changes nothing and shows, resource by
// resource in apply order, what the apply would do with the spec marked
// line by line; the coordinator checks the whole file as the apply would
// (a subnet on a network the same file creates passes; a bad field is
// refused, naming its document).
func TestApplyDryRun(t *testing.T) {
	c := newCLI(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := write("first.yaml", `kind: network
project: p
name: app
spec: {mtu: 1400}
`)
	c.must("apply", "-f", first)
	var before api.ClusterStatus
	c.json(&before, "status")

	next := write("next.yaml", `kind: subnet
project: p
name: s1
spec: {network: web, cidr: 10.1.0.0/24}
---
kind: network
project: p
name: app
spec: {mtu: 1300}
---
kind: network
project: p
name: web
`)
	out := c.must("apply", "-f", next, "--dry-run")
	for _, want := range []string{
		"network/p/app: would be updated (keeping spec.segmentation_id)", "  - mtu: 1400\n  + mtu: 1300\n    segmentation_id: 1000",
		"network/p/web: would be created", "subnet/p/s1: would be created", "  + cidr: 10.1.0.0/24",
		"2 created, 1 updated", "(dry run: nothing was changed)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	var rs []ctl.Result
	c.json(&rs, "apply", "-f", next, "--dry-run")
	if len(rs) != 3 || !rs[0].DryRun || rs[0].Ref != "network/p/app" || rs[0].Action != ctl.Updated {
		t.Errorf("dry run -o json: %+v", rs)
	}
	var after api.ClusterStatus
	c.json(&after, "status")
	if after.Epoch != before.Epoch {
		t.Fatalf("the dry run moved the epoch from %d to %d", before.Epoch, after.Epoch)
	}
	if _, err := c.run("subnets", "show", "-p", "p", "s1"); err == nil {
		t.Fatal("the dry run created subnet s1")
	}

	bad := write("bad.yaml", `kind: network
project: p
name: web
---
kind: subnet
project: p
name: s1
spec: {network: web, cidr: 10.1.0.0/33}
`)
	out, err := c.run("apply", "-f", bad, "--dry-run")
	if err == nil || !strings.Contains(err.Error(), "subnet/p/s1 (document 2) would be refused") || !strings.Contains(err.Error(), "spec.cidr") {
		t.Fatalf("dry run of a bad subnet: %v\n%s", err, out)
	}
	if _, err := c.run("networks", "show", "-p", "p", "web"); err == nil {
		t.Fatal("a refused dry run created network web")
	}
}
