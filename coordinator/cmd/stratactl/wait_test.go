package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/coordinator/ctl"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// report posts h1's status report, as its agent would.
func (c *cli) report(rep api.HostReport) {
	c.t.Helper()
	rep.Host, rep.Reported = "h1", time.Now()
	b, _ := json.Marshal(rep)
	req, _ := http.NewRequest(http.MethodPost, c.url+"/v1/hosts/h1/status", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		c.t.Fatalf("report: %v %v", err, resp)
	}
	resp.Body.Close()
}

// background runs a stratactl command and returns its outcome later.
func (c *cli) background(args ...string) <-chan [2]any {
	ch := make(chan [2]any, 1)
	go func() {
		out, err := c.run(args...)
		ch <- [2]any{out, err}
	}()
	return ch
}

// TestWaitUntilHostsApply: --wait returns once the host carrying the
// resource has applied its epoch, fails at once with the host's error
// when the host refuses it (an error from before the change does not
// count), and gives up after --wait-timeout naming who it waited for.
func TestWaitUntilHostsApply(t *testing.T) {
	ctl.WaitInterval = 20 * time.Millisecond
	c := newCLI(t)
	c.must("networks", "create", "-p", "p", "app")
	c.must("subnets", "create", "-p", "p", "s1", "--network", "app", "--cidr", "10.1.0.0/24")

	done := c.background("ports", "create", "-p", "p", "vm", "--network", "app", "--host", "h1", "--wait", "--wait-timeout", "30s")
	var port api.Resource
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := c.run("ports", "show", "-p", "p", "vm"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the port was not created")
		}
	}
	c.json(&port, "ports", "show", "-p", "p", "vm")
	var st api.ClusterStatus
	c.json(&st, "status")
	select {
	case r := <-done:
		t.Fatalf("--wait returned before h1 applied anything: %v\n%s", r[1], r[0])
	case <-time.After(300 * time.Millisecond):
	}
	c.report(api.HostReport{AppliedEpoch: st.Epoch})
	r := <-done
	if r[1] != nil || !strings.Contains(r[0].(string), "applied on 1 host(s)") {
		t.Fatalf("--wait after h1 applied epoch %d: %v\n%s", st.Epoch, r[1], r[0])
	}

	// h1 already failed this port at an older epoch: the change may fix
	// it, so that error does not end the wait; the one at the new epoch does.
	key := api.Key{Kind: "port", Project: "p", Name: "vm"}
	c.report(api.HostReport{AppliedEpoch: st.Epoch, Resources: []api.ResourceReport{{Key: key,
		ResourceStatus: api.ResourceStatus{State: api.ResourceError, Message: "old failure", Epoch: st.Epoch, Updated: time.Now()}}}})
	manifest := filepath.Join(t.TempDir(), "port.yaml")
	doc := "kind: port\nproject: p\nname: vm\nspec:\n  network: app\n  host: h1\n  mac: \"02:00:00:00:00:bb\"\n"
	if err := os.WriteFile(manifest, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	done = c.background("apply", "-f", manifest, "--wait", "--wait-timeout", "30s")
	var now api.ClusterStatus
	for c.json(&now, "status"); now.Epoch == st.Epoch; c.json(&now, "status") {
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case r := <-done:
		t.Fatalf("--wait ended on an error from before the change: %v\n%s", r[1], r[0])
	case <-time.After(300 * time.Millisecond):
	}
	c.report(api.HostReport{AppliedEpoch: now.Epoch, Resources: []api.ResourceReport{{Key: key,
		ResourceStatus: api.ResourceStatus{State: api.ResourceError, Message: "link busy", Epoch: now.Epoch, Updated: time.Now()}}}})
	r = <-done
	if err, _ := r[1].(error); !errors.Is(err, ctl.ErrNotApplied) || !strings.Contains(err.Error(), "port/p/vm") || !strings.Contains(err.Error(), "host h1: link busy") {
		t.Fatalf("--wait with h1's error: %v\n%s", r[1], r[0])
	}

	// A host that reports a state of the resource's own (an instance's
	// host says running, not applied) holds it: the wait ends. Before,
	// it waited out --wait-timeout.
	doc = strings.Replace(doc, "02:00:00:00:00:bb", "02:00:00:00:00:cc", 1)
	if err := os.WriteFile(manifest, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	prev := now.Epoch
	done = c.background("apply", "-f", manifest, "--wait", "--wait-timeout", "30s")
	for c.json(&now, "status"); now.Epoch == prev; c.json(&now, "status") {
		time.Sleep(20 * time.Millisecond)
	}
	c.report(api.HostReport{AppliedEpoch: now.Epoch, Resources: []api.ResourceReport{{Key: key,
		ResourceStatus: api.ResourceStatus{State: api.PowerRunning, Epoch: now.Epoch, Updated: time.Now()}}}})
	r = <-done
	if r[1] != nil || !strings.Contains(r[0].(string), "applied on 1 host(s)") {
		t.Fatalf("--wait with h1 reporting it running at epoch %d: %v\n%s", now.Epoch, r[1], r[0])
	}

	// Nobody applies the delete: --wait-timeout ends the wait.
	out, err := c.run("ports", "delete", "-p", "p", "vm", "--wait", "--wait-timeout", "200ms")
	if err == nil || !strings.Contains(err.Error(), "waiting for h1") {
		t.Fatalf("--wait with nobody applying: %v\n%s", err, out)
	}
}

// TestVolumeFlushShownAndWaitedFor: while the host that maps a krbd volume
// flushes its cache (it reports the flush), "volumes show" says how many
// dirty blocks are left, and --wait on the volume says what it waits for.
func TestVolumeFlushShownAndWaitedFor(t *testing.T) {
	ctl.WaitInterval = 20 * time.Millisecond
	c := newCLI(t)
	c.must("volumetypes", "create", "cached", "--pool", "volumes", "--attach-mode", "krbd", "--cache-mode", "writeback")
	c.must("volumes", "create", "-p", "p", "v1", "--size", "1", "--type", "cached")
	var st api.ClusterStatus
	c.json(&st, "status")
	c.report(api.HostReport{AppliedEpoch: st.Epoch, VolumeCaches: []api.VolumeCacheReport{{
		Image: "volumes/" + storagespec.VolumeImage("p", "v1"), Mode: "writeback", Phase: "detaching", DirtyBlocks: 70,
		Flush: &api.VolumeFlush{DirtyBlocks: 70, FirstBlocks: 300, Message: "flushes the volume's cache before it lets the image go: 70 dirty blocks left (300 when it began)"}}}})
	out := c.must("volumes", "show", "-p", "p", "v1")
	if !strings.Contains(out, "pending") || !strings.Contains(out, "host h1 flushes the volume's cache before it lets the image go: 70 dirty blocks left (300 when it began)") {
		t.Fatalf("volumes show during the flush:\n%s", out)
	}
	out, err := c.run("volumes", "extend", "-p", "p", "v1", "--size", "2", "--wait", "--wait-timeout", "300ms")
	if err == nil || !strings.Contains(err.Error(), "waiting for h1: host h1 flushes") || !strings.Contains(err.Error(), "70 dirty blocks left") {
		t.Fatalf("--wait during the flush: %v\n%s", err, out)
	}
}
