package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// A resource carries its state on each host; a host's error shows on the
// resource (to its project's tokens, and only theirs), in the cluster
// status and on the host, and clears when the host reports it applied.
func TestResourceStatusPerHost(t *testing.T) {
	f := newFixture(t, api.Host{Name: "h1", State: api.StateAlive, AppliedEpoch: 0}, api.Host{Name: "h2", State: api.StateAlive})
	for _, p := range []string{"/v1/projects/a", "/v1/projects/b"} {
		f.must(f.admin, "PUT", p, `{}`, 201)
	}
	f.must(f.admin, "PUT", "/v1/projects/a/securitygroups/web", `{"spec":{"rules":[{"direction":"ingress","protocol":"tcp","ports":"80"}]}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/b/securitygroups/web", `{"spec":{"rules":[]}}`, 201)
	// A project's groups are in the plans of the hosts with a port on
	// one of its networks.
	f.must(f.admin, "PUT", "/v1/projects/a/networks/n", `{}`, 201)
	for _, h := range []string{"h1", "h2"} {
		f.must(f.admin, "PUT", "/v1/projects/a/ports/p-"+h, `{"spec":{"network":"n","host":"`+h+`"}}`, 201)
	}
	tokA, err := IssueToken(f.store, api.TokenRequest{Name: "a", Role: api.RoleProject, Project: "a"})
	if err != nil {
		t.Fatal(err)
	}
	epoch := f.store.Epoch()
	report := func(host, state, msg string) {
		rep := api.HostReport{Host: host, AppliedEpoch: epoch, Reported: time.Now(), Resources: []api.ResourceReport{{
			Key:            api.Key{Kind: "securitygroup", Project: "a", Name: "web"},
			ResourceStatus: api.ResourceStatus{State: state, Message: msg, Epoch: epoch, Updated: time.Now()}}}}
		b, _ := json.Marshal(rep)
		f.must(f.admin, "POST", "/v1/hosts/"+host+"/status", string(b), 204)
	}
	report("h1", api.ResourceError, "secgroup: apply batch: device or resource busy")
	report("h2", api.ResourceApplied, "")

	var r api.Resource
	json.Unmarshal(f.must(tokA.Secret, "GET", "/v1/projects/a/securitygroups/web", "", 200), &r)
	if len(r.Hosts) != 2 || r.Hosts[0].Host != "h1" || r.Hosts[0].State != api.ResourceError || !strings.Contains(r.Hosts[0].Message, "busy") ||
		r.Hosts[1].State != api.ResourceApplied || r.Hosts[1].Epoch != epoch {
		t.Fatalf("per-host state %+v", r.Hosts)
	}
	if r.Status == nil || r.Status.State != api.ResourceError {
		t.Fatalf("status %+v: a host's error must come first", r.Status)
	}
	f.must(tokA.Secret, "GET", "/v1/projects/b/securitygroups/web", "", 403)
	f.must(tokA.Secret, "GET", "/v1/status", "", 403)

	var cs api.ClusterStatus
	json.Unmarshal(f.must(f.admin, "GET", "/v1/status", "", 200), &cs)
	if cs.Converged || len(cs.Failing) != 1 || cs.Failing[0].Host != "h1" || cs.Failing[0].Name != "web" {
		t.Fatalf("cluster status %+v", cs)
	}
	var h api.Host
	json.Unmarshal(f.must(f.admin, "GET", "/v1/hosts/h1", "", 200), &h)
	if len(h.Failing) != 1 || h.Failing[0].Project != "a" {
		t.Fatalf("host failing %+v", h.Failing)
	}

	report("h1", api.ResourceApplied, "")
	r = api.Resource{}
	json.Unmarshal(f.must(tokA.Secret, "GET", "/v1/projects/a/securitygroups/web", "", 200), &r)
	if r.Hosts[0].State != api.ResourceApplied || r.Hosts[0].Message != "" {
		t.Fatalf("error did not clear: %+v", r.Hosts)
	}
	cs = api.ClusterStatus{}
	json.Unmarshal(f.must(f.admin, "GET", "/v1/status", "", 200), &cs)
	if len(cs.Failing) != 0 {
		t.Fatalf("cluster still failing: %+v", cs.Failing)
	}
}
