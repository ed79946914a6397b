package lab

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestLabDemoSecurity runs the demo's security step against a real lab:
// plain HTTP and an unpinned TLS client are refused, a keyless gossip
// member and a keyed one claiming h1's name are refused, and an endpoint
// forging its source address or MAC gets no reply while its own traffic
// does.
func TestLabDemoSecurity(t *testing.T) {
	l := testLab(t, 2, 10000)
	if err := l.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitCLI(t, l, 30*time.Second, "hosts up", AllAliveAndConverged(2))
	applyManifest(t, l, `
kind: project
name: sec
---
kind: network
project: sec
name: app
spec: {dhcp_host: h1}
---
kind: subnet
project: sec
name: app-v4
spec: {network: app, cidr: 10.11.0.0/24}
---
kind: port
project: sec
name: web
spec: {network: app, host: h1, owner: endpoint}
---
kind: port
project: sec
name: db
spec: {network: app, host: h2, owner: endpoint}
`)
	waitCLI(t, l, 60*time.Second, "endpoints applied", AllAliveAndConverged(2))
	var out bytes.Buffer
	if err := l.DemoSecurity(context.Background(), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Logf("demo step:\n%s", out.String())
	for _, want := range []string{"plain HTTP: refused", "TLS without the lab's CA pinned: refused", "without the key: refused",
		"claiming h1", "forged source address", "forged MAC"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}
