package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// TestSnapshotStatusFromTheMappingHost: a snapshot of an attached krbd
// volume is taken by the host that maps it (agent/storage/mappedsnap), not
// by the storage controller's host. The coordinator keeps that host's
// reports on the snapshot (the snapshot is in the plan of the hosts that
// hold its volume, and of the storage hosts), shows its progress as the
// snapshot's status beside the controller's word, lets its failure win
// over the controller's later pending, and shows the snapshot available
// once that host took it.
func TestSnapshotStatusFromTheMappingHost(t *testing.T) {
	f := computeFixture(t)
	f.must(f.admin, "PUT", "/v1/volumetypes/cached", `{"spec":{"pool":"volumes","attach_mode":"krbd","cache_mode":"writeback"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/volumes/v", `{"spec":{"size_gib":1,"type":"cached"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/instances/vm", `{"spec":{"flavor":"small","image":"cirros","host":"h2","volumes":["v"]}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/volumesnapshots/s", `{"spec":{"volume":"v"}}`, 201)
	var sn api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/a/volumesnapshots/s", "", 200), &sn)
	tokens := map[string]string{}
	for _, h := range []string{"h1", "h2"} {
		tok, err := IssueToken(f.store, api.TokenRequest{Name: h, Role: api.RoleAgent, Host: h})
		if err != nil {
			t.Fatal(err)
		}
		tokens[h] = tok.Secret
	}
	t0 := time.Now().UTC()
	report := func(host, state, msg string, at time.Duration) {
		t.Helper()
		// h1 runs the storage controller: its plan holds every snapshot.
		rep, _ := json.Marshal(api.HostReport{Host: host, AppliedEpoch: sn.Epoch, StorageController: host == "h1", Resources: []api.ResourceReport{{
			Key: sn.Key(), ResourceStatus: api.ResourceStatus{State: state, Message: msg, Epoch: sn.Epoch, Updated: t0.Add(at)}}}})
		f.must(tokens[host], "POST", "/v1/hosts/"+host+"/status", string(rep), 204)
	}
	get := func() api.Resource {
		t.Helper()
		var r api.Resource
		if err := json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/a/volumesnapshots/s", "", 200), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	hostMsg := func(r api.Resource, host string) string {
		for _, h := range r.Hosts {
			if h.Host == host {
				return h.State + ": " + h.Message
			}
		}
		return ""
	}

	const waits = "taken by the host that maps volumes/volume-x (lock owner client.4): it writes its cache back, holds the volume's writes and makes the snapshot; that host's status says how far"
	const progress = "host h2 writes the volume's cache back before the snapshot: 70 dirty blocks left (100 when it began) after 3s"
	report("h1", "pending", waits, 0)
	report("h2", "pending", progress, time.Second)
	r := get()
	if r.Status == nil || r.Status.Host != "h2" || r.Status.Message != progress {
		t.Errorf("status while the mapping host writes the cache back: %+v", r.Status)
	}
	if !strings.Contains(hostMsg(r, "h1"), "taken by the host that maps") || !strings.Contains(hostMsg(r, "h2"), "70 dirty blocks left") {
		t.Errorf("per-host statuses: %+v", r.Hosts)
	}

	const failed = "host h2 could not take the snapshot (tried again in 30s): snapshot x: the cache failed (-5): its 4096 dirty bytes cannot be flushed"
	report("h2", "error", failed, 2*time.Second)
	report("h1", "pending", waits, 3*time.Second)
	if r := get(); r.Status == nil || r.Status.State != "error" || r.Status.Host != "h2" || r.Status.Message != failed {
		t.Errorf("status once the mapping host failed: %+v", r.Status)
	}

	report("h2", "available", "taken by host h2 with the volume's writes held for 80ms (cache flushed first; 4s in all)", 4*time.Second)
	if r := get(); r.Status == nil || r.Status.State != "available" || r.Status.Host != "h2" {
		t.Errorf("status once the mapping host took it: %+v", r.Status)
	}
}
