package lab

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestLabDemoContract runs the demo's contract step against a real lab:
// every write is refused naming its field, the epoch stays, and the
// demo's 60-character security group (in testdata/lab/demo.yaml) is
// applied on its host like any other. Then the cache demo's step
// (DemoCache), which needs only the API.
func TestLabDemoContract(t *testing.T) {
	l := testLab(t, 2, 10000)
	if err := l.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitCLI(t, l, 30*time.Second, "hosts up", AllAliveAndConverged(2))
	group := strings.Repeat("g", 60)
	applyManifest(t, l, `
kind: project
name: `+DemoContractProject+`
---
kind: network
project: `+DemoContractProject+`
name: app
---
kind: subnet
project: `+DemoContractProject+`
name: app-v4
spec: {network: app, cidr: 10.10.0.0/24}
---
kind: securitygroup
project: `+DemoContractProject+`
name: `+group+`
spec:
  rules:
  - {direction: egress}
  - {direction: ingress, remote_cidr: 0.0.0.0/0}
---
kind: port
project: `+DemoContractProject+`
name: db
spec: {network: app, host: h2, owner: endpoint, security_groups: [`+group+`]}
`)
	waitCLI(t, l, 60*time.Second, "the 60-character group applied", AllAliveAndConverged(2))
	var out bytes.Buffer
	if err := l.DemoContract(context.Background(), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("demo step:\n%s", out.String())
	for _, want := range []string{"name:", "spec.host:", "spec.dhcp_host:", "nothing changed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}

	// The cache demo's step, in the same lab: its volume type and volume,
	// and the API refusing to boot from a krbd volume.
	applyManifest(t, l, `
kind: project
name: `+demoProject+`
---
kind: flavor
name: tiny
spec: {vcpus: 1, ram_mib: 160, disk_gib: 1}
`)
	out.Reset()
	if err := l.DemoCache(context.Background(), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("cache demo step:\n%s", out.String())
	for _, want := range []string{"spec.boot_volume", "this host has no krbd", "TestCachedVolumesInGuest"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("cache demo output lacks %q", want)
		}
	}
}
