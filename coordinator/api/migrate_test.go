package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
)

// hostReports posts host's report of one instance.
func hostReports(f *fixture, host, name, state, msg string, epoch uint64) {
	rep := api.HostReport{Host: host, Compute: &api.ComputeHost{Connected: true},
		Resources: []api.ResourceReport{{Key: api.Key{Kind: "instance", Project: "a", Name: name},
			ResourceStatus: api.ResourceStatus{State: state, Message: msg, Epoch: epoch}}}}
	buf, _ := json.Marshal(rep)
	f.must(f.admin, "POST", "/v1/hosts/"+host+"/status", string(buf), 204)
}

func inPlan(f *fixture, host, name string) bool {
	_, p := f.plan(host, 0, "")
	for _, r := range p.Resources {
		if r.Kind == "instance" && r.Name == name {
			return true
		}
	}
	return false
}

func putVM(f *fixture, name string, s api.InstanceSpec) (int, string, api.InstanceSpec) {
	buf, _ := json.Marshal(map[string]any{"spec": s})
	code, b := f.do(f.admin, "PUT", "/v1/projects/a/instances/"+name, string(buf))
	var pr api.PutResult
	json.Unmarshal(b, &pr)
	return code, string(b), decodeSpec[api.InstanceSpec](pr.Resource)
}

// TestColdMigrationKeepsTheInstance: a cold migration sets the move
// (source kept in the instance's spec), puts the instance in both hosts'
// plans and its ports on the new host; nothing else may move it meanwhile;
// a client cannot write the move; the new host's report at the
// instance's epoch ends it, and the old host's plan loses the instance.
func TestColdMigrationKeepsTheInstance(t *testing.T) {
	f := schedFixture(t)
	_, _, s := createVM(f, "vm", `,"host":"h1","power":"stopped"`)
	s.Migrations++
	code, body, got := putVM(f, "vm", s)
	if code != 200 || got.Host == "h1" || got.Migration == nil || got.Migration.Source != "h1" || got.Migration.Live {
		t.Fatalf("migrate: %d %s", code, body)
	}
	if p := portSpec(t, f, "a", got.NetworkPorts[0]); p.Host != got.Host {
		t.Fatalf("port on %s, want %s at once for a cold move", p.Host, got.Host)
	}
	if !inPlan(f, "h1", "vm") || !inPlan(f, got.Host, "vm") {
		t.Fatal("a migrating instance must be in the plans of both hosts")
	}
	again := got
	again.Migrations++
	if code, body, _ := putVM(f, "vm", again); code != 409 || !strings.Contains(body, "is migrating from h1") {
		t.Fatalf("a second move during the first: %d %s", code, body)
	}
	again = got
	again.Migration = &api.InstanceMigration{Source: "h3"}
	if code, body, _ := putVM(f, "vm", again); code != 400 || !strings.Contains(body, "spec.migration") {
		t.Fatalf("a client writes the move: %d %s", code, body)
	}
	r := getInstance(t, f, "vm")
	// The source's report, or a destination still copying, ends nothing.
	hostReports(f, "h1", "vm", "stopped", "", r.Epoch)
	hostReports(f, got.Host, "vm", "missing", "", r.Epoch)
	hostReports(f, got.Host, "vm", "stopped", "", r.Epoch-1)
	if s := decodeSpec[api.InstanceSpec](getInstance(t, f, "vm")); s.Migration == nil {
		t.Fatal("the move ended before the destination had the instance")
	}
	hostReports(f, got.Host, "vm", "stopped", "", r.Epoch)
	r = getInstance(t, f, "vm")
	if s := decodeSpec[api.InstanceSpec](r); s.Migration != nil || s.Host != got.Host {
		t.Fatalf("after the destination's report: %+v", s)
	}
	if p := r.Placement; p == nil || p.Message != "migrated from h1 to "+got.Host {
		t.Fatalf("placement after the move: %+v", p)
	}
	if inPlan(f, "h1", "vm") {
		t.Fatal("the old host still has the instance in its plan")
	}
}

// TestLiveMigration: a live migration needs the instance running with its
// root disk on RBD; its ports stay on the source until the destination
// reports the guest running there; a failed one, as the source reports
// it, puts the instance back on the source.
func TestLiveMigration(t *testing.T) {
	f := schedFixture(t)
	f.must(f.admin, "PUT", "/v1/volumetypes/default", `{"spec":{"pool":"volumes"}}`, 201)
	f.must(f.admin, "PUT", "/v1/images/tiny", `{"spec":{"format":"raw","path":"/src/tiny.raw","pool":"images","size_bytes":1073741824}}`, 201)
	_, _, local := createVM(f, "local", `,"host":"h1"`)
	local.LiveMigrations++
	if code, body, _ := putVM(f, "local", local); code != 400 || !strings.Contains(body, "root disk on RBD") || !strings.Contains(body, "spec.live_migrations") {
		t.Fatalf("live migration of a local disk: %d %s", code, body)
	}
	f.must(f.admin, "PUT", "/v1/projects/a/instances/vm", `{"spec":{"flavor":"small","image":"tiny","networks":["net"],"host":"h1"}}`, 201)
	s := instanceSpec(t, f, "a", "vm")
	stopped := s
	stopped.Power, stopped.LiveMigrations = api.PowerStopped, 1
	if code, body, _ := putVM(f, "vm", stopped); code != 400 || !strings.Contains(body, "needs the instance running") {
		t.Fatalf("live migration of a stopped instance: %d %s", code, body)
	}
	// A krbd volume is a block device of its host: it cannot move live.
	f.must(f.admin, "PUT", "/v1/volumetypes/cached", `{"spec":{"pool":"volumes","attach_mode":"krbd","cache_mode":"writeback"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/volumes/k", `{"spec":{"size_gib":1,"type":"cached"}}`, 201)
	withK := s
	withK.Volumes, withK.LiveMigrations = []string{"k"}, 1
	if code, body, _ := putVM(f, "vm", withK); code != 400 || !strings.Contains(body, "through krbd") || !strings.Contains(body, "spec.live_migrations") {
		t.Fatalf("live migration with a krbd volume: %d %s", code, body)
	}
	s.LiveMigrations = 1
	s.Host = "h2" // an admin names the host
	code, body, got := putVM(f, "vm", s)
	if code != 200 || got.Host != "h2" || got.Migration == nil || !got.Migration.Live || got.Migration.Source != "h1" {
		t.Fatalf("live migrate: %d %s", code, body)
	}
	if p := portSpec(t, f, "a", got.NetworkPorts[0]); p.Host != "h1" {
		t.Fatalf("port on %s during a live move, want the source h1", p.Host)
	}
	r := getInstance(t, f, "vm")
	hostReports(f, "h2", "vm", "stopped", "", r.Epoch) // not running yet: goes on
	hostReports(f, "h1", "vm", "running", computespec.LiveMigrationFailed+"peer unreachable", r.Epoch)
	r = getInstance(t, f, "vm")
	if s := decodeSpec[api.InstanceSpec](r); s.Host != "h1" || s.Migration != nil {
		t.Fatalf("after a failed live migration: %+v", s)
	}
	if p := r.Placement; p == nil || p.State != api.PlacementRefused || !strings.Contains(p.Message, "peer unreachable") {
		t.Fatalf("placement after a failed live migration: %+v", p)
	}

	s = decodeSpec[api.InstanceSpec](r)
	s.LiveMigrations++
	code, body, got = putVM(f, "vm", s)
	if code != 200 || got.Host == "h1" || got.Migration == nil {
		t.Fatalf("live migrate again (scheduler's choice): %d %s", code, body)
	}
	r = getInstance(t, f, "vm")
	hostReports(f, got.Host, "vm", "running", "", r.Epoch)
	r = getInstance(t, f, "vm")
	if s := decodeSpec[api.InstanceSpec](r); s.Migration != nil || s.Host != got.Host {
		t.Fatalf("after the destination runs it: %+v", s)
	}
	if p := portSpec(t, f, "a", got.NetworkPorts[0]); p.Host != got.Host {
		t.Fatalf("port on %s after the live move, want %s", p.Host, got.Host)
	}
	if p := r.Placement; p == nil || p.Message != "migrated from h1 to "+got.Host+" (live)" {
		t.Fatalf("placement after the live move: %+v", p)
	}
}
