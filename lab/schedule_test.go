package lab

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/compute/virttest"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
)

const antiAffinityBase = tinyGuestCatalog + `---
kind: project
name: s
---
kind: servergroup
project: s
name: web
spec: {policy: anti-affinity}
`

// TestLabAntiAffinity: three compute hosts, each with its own libvirtd;
// three instances of an anti-affinity group land on three hosts (each
// host's agent defines its domain and reports it), and a fourth is
// refused with the scheduler's reason. The instances are created stopped:
// placement is what is tested, and booting three TCG guests on two cores
// would only slow it down. Then make lab's scheduling demo runs on it.
func TestLabAntiAffinity(t *testing.T) {
	virttest.Require(t)
	l := testLab(t, 3, 10000)
	g, err := BuildGuest(repoRoot(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	lvs := map[int]*Libvirtd{}
	for i := 1; i <= 3; i++ {
		dir, err := testenv.MkdirTemp("stlv")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		lv, err := l.StartLibvirtd(i, dir)
		if err != nil {
			t.Fatal(err)
		}
		lvs[i] = lv
		t.Cleanup(func() {
			if err := lv.Stop(); err != nil {
				t.Errorf("stop libvirtd of h%d: %v", lv.Host, err)
			}
		})
	}
	// The zones and agent-config aggregates of make lab's scheduling demo,
	// which runs at the end.
	l.AgentExtraArgs = func(i int) []string { return append(ComputeArgs(lvs[i], g, 2*time.Second), SchedulingZones(i)...) }
	if err := l.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitCLI(t, l, 60*time.Second, "hosts up", AllAliveAndConverged(3))
	applyManifest(t, l, strings.Replace(antiAffinityBase, "%s", g.Image, 1))

	hosts := map[string]string{}
	for _, name := range []string{"web1", "web2", "web3"} {
		stratactl(t, l, nil, "instances", "create", "-p", "s", name, "--flavor", "tiny", "--image", "guest", "--group", "web", "--stopped")
		var r api.Resource
		stratactl(t, l, &r, "instances", "show", "-p", "s", name)
		var spec api.InstanceSpec
		if err := json.Unmarshal(r.Spec, &spec); err != nil {
			t.Fatal(err)
		}
		host := spec.Host
		if other, dup := hosts[host]; dup || host == "" {
			t.Fatalf("%s placed on %q, where %s already is", name, host, other)
		}
		hosts[host] = name
	}
	t.Logf("anti-affinity group web: %v", hosts)
	// Each host's agent has the instance in its plan and reports it.
	waitCLI(t, l, 60*time.Second, "instances defined on their hosts", AllAliveAndConverged(3))
	for host, name := range hosts {
		var r api.Resource
		stratactl(t, l, &r, "instances", "show", "-p", "s", name)
		if r.Status == nil || r.Status.Host != host {
			t.Fatalf("%s: status %+v, want a report from %s", name, r.Status, host)
		}
	}
	err = l.Ctl(nil, "instances", "create", "-p", "s", "web4", "--flavor", "tiny", "--image", "guest", "--group", "web", "--stopped")
	want := "0 of 3 hosts: 3 already holding a member of anti-affinity group web"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("fourth member: %v, want the reason %q", err, want)
	}
	t.Logf("fourth member refused: %v", err)

	// make lab's scheduling demo: zones, an aggregate h3 joined by its
	// agent config, and refusals with their reasons.
	var out strings.Builder
	err = l.DemoScheduling(&out, g.Image)
	t.Logf("scheduling demo:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
}
