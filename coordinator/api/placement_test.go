package api

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

func getInstance(t *testing.T, f *fixture, name string) api.Resource {
	t.Helper()
	var r api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/a/instances/"+name, "", 200), &r)
	return r
}

// TestPlacementStatusKeepsTheRefusal: a placement's outcome is the
// instance's placement status; a refused resize changes no spec and no
// epoch, but its reasons stay in the status, filter by filter.
func TestPlacementStatusKeepsTheRefusal(t *testing.T) {
	f := schedFixture(t)
	f.must(f.admin, "PUT", "/v1/flavors/large", `{"spec":{"vcpus":2,"ram_mib":2048,"disk_gib":1}}`, 201)
	_, _, s := createVM(f, "vm", `,"host":"h1","power":"stopped"`)
	for _, h := range []string{"h2", "h3"} {
		if code, body, _ := createVM(f, "fill-"+h, `,"host":"`+h+`"`); code != 201 {
			t.Fatalf("fill %s: %d %s", h, code, body)
		}
	}
	if p := getInstance(t, f, "vm").Placement; p == nil || p.State != api.PlacementPlaced || p.Host != "h1" {
		t.Fatalf("placement after create: %+v", p)
	}
	before := f.store.Epoch()
	s.Flavor = "large"
	buf, _ := json.Marshal(map[string]any{"spec": s})
	code, body := f.do(f.admin, "PUT", "/v1/projects/a/instances/vm", string(buf))
	want := "0 of 4 hosts: 1 drained or dead, 3 out of RAM"
	if code != 409 || !strings.Contains(string(body), want) {
		t.Fatalf("resize to a flavor no host has room for: %d %s", code, body)
	}
	if f.store.Epoch() != before {
		t.Fatal("a refused resize changed the store")
	}
	r := getInstance(t, f, "vm")
	p := r.Placement
	if p == nil || p.State != api.PlacementRefused || !strings.Contains(p.Message, want) || p.TotalHosts != 4 ||
		!slices.Equal(p.Removed, []api.PlacementRemoval{{Reason: "drained or dead", Hosts: 1}, {Reason: "out of RAM", Hosts: 3}}) {
		t.Fatalf("placement after the refused resize: %+v", p)
	}
	if decodeSpec[api.InstanceSpec](r).Flavor != "small" {
		t.Fatal("the refused resize changed the flavor")
	}
	// Room again: the resize goes through and the status says where.
	f.must(f.admin, "DELETE", "/v1/projects/a/instances/fill-h2", "", 200)
	if code, body := f.do(f.admin, "PUT", "/v1/projects/a/instances/vm", string(buf)); code != 200 {
		t.Fatalf("resize with room on h2: %d %s", code, body)
	}
	if p := getInstance(t, f, "vm").Placement; p == nil || p.State != api.PlacementPlaced || p.Host != "h2" {
		t.Fatalf("placement after the resize: %+v", p)
	}
	// A client cannot write what only the coordinator sets.
	s.Flavor, s.BuildFailures = "small", []string{"h3"}
	buf, _ = json.Marshal(map[string]any{"spec": s})
	if code, body := f.do(f.admin, "PUT", "/v1/projects/a/instances/vm", string(buf)); code != 400 || !strings.Contains(string(body), "spec.build_failures") {
		t.Fatalf("client sets build_failures: %d %s", code, body)
	}
}

// buildFailure posts host's report that it could not build the instance.
func buildFailure(f *fixture, host, name string, epoch uint64) {
	rep := api.HostReport{Host: host, Compute: &api.ComputeHost{Connected: true},
		Resources: []api.ResourceReport{{Key: api.Key{Kind: "instance", Project: "a", Name: name},
			ResourceStatus: api.ResourceStatus{State: "missing", Message: "disk from image: no space left", Epoch: epoch}}}}
	buf, _ := json.Marshal(rep)
	f.must(f.admin, "POST", "/v1/hosts/"+host+"/status", string(buf), 204)
}

// TestBuildFailureMovesTheInstance: a host that reports it could not
// build an instance loses it to another host (ports follow), once per
// failure; after three hosts, or with no other host, it stays and its
// placement status says why. A libvirtd outage is not a build failure.
func TestBuildFailureMovesTheInstance(t *testing.T) {
	f := schedFixture(t)
	createVM(f, "vm", `,"host":"h1"`)
	r := getInstance(t, f, "vm")
	// Not build failures: libvirt unreachable, or a domain that exists.
	rep := api.HostReport{Host: "h1", Compute: &api.ComputeHost{Connected: false},
		Resources: []api.ResourceReport{{Key: r.Key(), ResourceStatus: api.ResourceStatus{State: "missing", Message: "x", Epoch: r.Epoch}}}}
	buf, _ := json.Marshal(rep)
	f.must(f.admin, "POST", "/v1/hosts/h1/status", string(buf), 204)
	rep.Compute.Connected, rep.Resources[0].State = true, "stopped"
	buf, _ = json.Marshal(rep)
	f.must(f.admin, "POST", "/v1/hosts/h1/status", string(buf), 204)
	if got := decodeSpec[api.InstanceSpec](getInstance(t, f, "vm")); got.Host != "h1" || len(got.BuildFailures) != 0 {
		t.Fatalf("moved without a build failure: %+v", got)
	}

	seen := []string{"h1"}
	for i := 1; i < api.MaxBuildAttempts; i++ {
		r := getInstance(t, f, "vm")
		host := decodeSpec[api.InstanceSpec](r).Host
		buildFailure(f, host, "vm", r.Epoch)
		buildFailure(f, host, "vm", r.Epoch) // the same failure again: acted on once
		r = getInstance(t, f, "vm")
		got := decodeSpec[api.InstanceSpec](r)
		if slices.Contains(seen, got.Host) || got.Host == "h4" || !slices.Equal(got.BuildFailures, seen) {
			t.Fatalf("after a failure on %s: host %s, build failures %v (want %v)", host, got.Host, got.BuildFailures, seen)
		}
		if p := r.Placement; p == nil || p.State != api.PlacementPlaced ||
			!strings.HasPrefix(p.Message, fmt.Sprintf("build failed on %s; placed on %s", strings.Join(seen, ", "), got.Host)) {
			t.Fatalf("placement after the move: %+v", p)
		}
		if ps := portSpec(t, f, "a", got.NetworkPorts[0]); ps.Host != got.Host {
			t.Fatalf("port stayed on %s after the move to %s", ps.Host, got.Host)
		}
		seen = append(seen, got.Host)
	}
	// A stale report from a host it left changes nothing.
	before := f.store.Epoch()
	buildFailure(f, "h1", "vm", r.Epoch)
	if f.store.Epoch() != before {
		t.Fatal("a report from a host the instance left moved it")
	}
	// The third host fails too: it stays there, and says why.
	r = getInstance(t, f, "vm")
	last := decodeSpec[api.InstanceSpec](r).Host
	buildFailure(f, last, "vm", r.Epoch)
	r = getInstance(t, f, "vm")
	if got := decodeSpec[api.InstanceSpec](r); got.Host != last || len(got.BuildFailures) != 3 {
		t.Fatalf("after the third failure: %+v", got)
	}
	if p := r.Placement; p == nil || p.State != api.PlacementRefused || !strings.Contains(p.Message, "build failed on 3 hosts") {
		t.Fatalf("placement after the third failure: %+v", p)
	}

	// With no other host: the failure is recorded, the instance stays,
	// the reasons are in its status.
	_, _, _ = createVM(f, "z", `,"zone":"az2"`)
	rz := getInstance(t, f, "z")
	buildFailure(f, "h3", "z", rz.Epoch)
	rz = getInstance(t, f, "z")
	if got := decodeSpec[api.InstanceSpec](rz); got.Host != "h3" || !slices.Equal(got.BuildFailures, []string{"h3"}) {
		t.Fatalf("zone az2 has no other host: %+v", got)
	}
	want := "build failed on h3; no host for instance a/z: 0 of 4 hosts: 1 where its build failed, 1 drained or dead, 2 in another zone"
	if p := rz.Placement; p == nil || p.State != api.PlacementRefused || p.Message != want {
		t.Fatalf("placement with no other host: %+v, want %q", p, want)
	}
}
