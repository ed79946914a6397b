package api

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

// TestAgentTokenScopedToHost: host A's credential reads only A's plan and
// reports only for A, and only on resources in A's plan.
func TestAgentTokenScopedToHost(t *testing.T) {
	f := newFixture(t)
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/widgets/on-a", `{"spec":{"size":1,"host":"ha"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/widgets/on-b", `{"spec":{"size":1,"host":"hb"}}`, 201)
	token := func(body string) string {
		var nt api.NewToken
		json.Unmarshal(f.must(f.admin, "POST", "/v1/tokens", body, 201), &nt)
		return nt.Secret
	}
	a := token(`{"name":"agent-ha","role":"agent","host":"ha"}`)

	// An agent token must name one valid host; other roles name none.
	for _, body := range []string{
		`{"name":"x","role":"agent"}`,
		`{"name":"x","role":"agent","host":"Bad Host"}`,
		`{"name":"x","role":"admin","host":"ha"}`,
	} {
		if code, b := f.do(f.admin, "POST", "/v1/tokens", body); code != 400 || !json.Valid(b) {
			t.Errorf("create token %s: %d %s, want 400", body, code, b)
		}
	}

	var p api.Plan
	json.Unmarshal(f.must(a, "GET", "/v1/hosts/ha/plan?since=0", "", 200), &p)
	for _, r := range p.Resources {
		if r.Name == "on-b" {
			t.Fatalf("host a's plan carries b's widget: %+v", p)
		}
	}
	f.must(a, "GET", "/v1/hosts/hb/plan?since=0", "", 403)
	f.must(a, "POST", "/v1/hosts/hb/status", `{"host":"hb","applied_epoch":1}`, 403)
	f.must(a, "POST", "/v1/hosts/ha/status", `{"host":"ha","applied_epoch":1}`, 204)
	f.must(a, "GET", "/v1/hosts", "", 403) // reports hold other hosts' tenants

	// A report on b's resource writes no status there.
	rep := func(name string) string {
		return fmt.Sprintf(`{"host":"ha","resources":[{"kind":"widget","project":"a","name":%q,"state":"active"}]}`, name)
	}
	f.must(a, "POST", "/v1/hosts/ha/status", rep("on-b"), 204)
	var w api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/a/widgets/on-b", "", 200), &w)
	if w.Status != nil {
		t.Fatalf("b's widget got a status from a: %+v", w.Status)
	}
	f.must(a, "POST", "/v1/hosts/ha/status", rep("on-a"), 204)
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/a/widgets/on-a", "", 200), &w)
	if w.Status == nil || w.Status.Host != "ha" || w.Status.State != "active" {
		t.Fatalf("a's widget status %+v", w.Status)
	}

	// Host names in paths are validated, whoever asks.
	for _, path := range []string{"/v1/hosts/h%01x/status", "/v1/hosts/H_1/status"} {
		if code, b := f.do(f.admin, "POST", path, `{}`); code != 400 {
			t.Errorf("POST %s: %d %s, want 400", path, code, b)
		}
	}
	// A project token acts for no host.
	f.must(f.admin, "PUT", "/v1/projects/b", `{}`, 201)
	pt := token(`{"name":"b-ci","role":"project","project":"b"}`)
	f.must(pt, "GET", "/v1/hosts/ha/plan?since=0", "", 403)
}

// TestProjectDeleteRevokesTokens: a project token dies with its project
// and does not come back when a project of the same name is made again.
func TestProjectDeleteRevokesTokens(t *testing.T) {
	f := newFixture(t)
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	var nt api.NewToken
	json.Unmarshal(f.must(f.admin, "POST", "/v1/tokens", `{"name":"a-ci","role":"project","project":"a"}`, 201), &nt)
	f.must(nt.Secret, "GET", "/v1/projects/a", "", 200)
	f.must(f.admin, "DELETE", "/v1/projects/a", "", 200)
	f.must(nt.Secret, "GET", "/v1/projects/a", "", 401)
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	f.must(nt.Secret, "GET", "/v1/projects/a", "", 401)
	f.must(nt.Secret, "PUT", "/v1/projects/a/widgets/w", `{"spec":{"size":1}}`, 401)
	json.Unmarshal(f.must(f.admin, "POST", "/v1/tokens", `{"name":"a-ci2","role":"project","project":"a"}`, 201), &nt)
	f.must(nt.Secret, "GET", "/v1/projects/a", "", 200)
}
