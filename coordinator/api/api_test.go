package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
)

type widgetSpec struct {
	Size int    `json:"size"`
	Host string `json:"host,omitempty"`
}

type staticHosts []api.Host

func (h staticHosts) Hosts() []api.Host { return h }

type fixture struct {
	t      *testing.T
	srv    *httptest.Server
	server *Server
	store  *store.Store
	admin  string
}

// newFixture serves the default kinds plus "widget", a project-scoped kind
// placed on the host named in its spec, standing in for later kinds.
func newFixture(t *testing.T, hosts ...api.Host) *fixture {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "c.db"), store.Options{RetainDeltas: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := serve(t, st, hosts...)
	tok, err := IssueToken(st, api.TokenRequest{Name: "admin", Role: api.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	f.admin = tok.Secret
	return f
}

// serve serves st with the default kinds plus "widget".
func serve(t *testing.T, st *store.Store, hosts ...api.Host) *fixture {
	t.Helper()
	reg := registry.Default()
	err := reg.Add(&registry.Kind{
		Name: "widget", Plural: "widgets", Scope: registry.Project, Order: 10,
		NewSpec: func() any { return &widgetSpec{} },
		Admit: func(_ *registry.Admission, _ *api.Resource, spec any) error {
			if s := spec.(*widgetSpec); s.Size < 1 || s.Size > 10 {
				return api.Fieldf("spec.size", "%d is outside 1..10", s.Size)
			}
			return nil
		},
		OnHost: func(r api.Resource, host string) bool {
			var s widgetSpec
			_ = json.Unmarshal(r.Spec, &s)
			return s.Host == host
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	server := New(Options{Store: st, Registry: reg, Hosts: staticHosts(hosts), MaxWait: 5 * time.Second})
	srv := httptest.NewServer(server)
	t.Cleanup(srv.Close)
	return &fixture{t: t, srv: srv, server: server, store: st}
}

func (f *fixture) do(token, method, path, body string) (int, []byte) {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (f *fixture) must(token, method, path, body string, want int) []byte {
	f.t.Helper()
	code, b := f.do(token, method, path, body)
	if code != want {
		f.t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, want)
	}
	return b
}

func TestAuthRequiresValidToken(t *testing.T) {
	f := newFixture(t)
	if code, _ := f.do("", "GET", "/v1/projects", ""); code != 401 {
		t.Fatalf("no token: %d, want 401", code)
	}
	if code, _ := f.do("strata_admin_nope", "GET", "/v1/projects", ""); code != 401 {
		t.Fatalf("wrong token: %d, want 401", code)
	}
	f.must(f.admin, "GET", "/v1/projects", "", 200)
	// The OpenAPI document is public.
	f.must("", "GET", "/v1/openapi.json", "", 200)
}

func TestProjectCreateIsIdempotent(t *testing.T) {
	f := newFixture(t)
	var r1, r2 api.PutResult
	json.Unmarshal(f.must(f.admin, "PUT", "/v1/projects/demo", `{"spec":{"description":"d"}}`, 201), &r1)
	json.Unmarshal(f.must(f.admin, "PUT", "/v1/projects/demo", `{"spec":{"description":"d"}}`, 200), &r2)
	if !r1.Changed || r2.Changed || r1.Epoch != 1 || r2.Epoch != 1 {
		t.Fatalf("first %+v second %+v", r1, r2)
	}
	f.must(f.admin, "POST", "/v1/projects", `{"name":"demo"}`, 409)
	var list []api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects", "", 200), &list)
	if len(list) != 1 || list[0].Name != "demo" {
		t.Fatalf("list %+v", list)
	}
}

func TestBadInputNamesFieldAndChangesNothing(t *testing.T) {
	f := newFixture(t)
	f.must(f.admin, "PUT", "/v1/projects/demo", `{}`, 201)
	cases := []struct {
		name, method, path, body, field string
	}{
		{"malformed json", "POST", "/v1/projects", `{"name":"x",`, "body"},
		{"not an object", "POST", "/v1/projects", `[1,2]`, "body"},
		{"unknown top field", "POST", "/v1/projects", `{"name":"x","colour":"red"}`, "colour"},
		{"unknown spec field", "POST", "/v1/projects", `{"name":"x","spec":{"descr":"y"}}`, "spec.descr"},
		{"empty name", "POST", "/v1/projects", `{"name":""}`, "name"},
		{"name too long", "POST", "/v1/projects", `{"name":"` + strings.Repeat("a", 64) + `"}`, "name"},
		{"name bad chars", "POST", "/v1/projects", `{"name":"Bad_Name"}`, "name"},
		{"wrong type name", "POST", "/v1/projects", `{"name":42}`, "name"},
		{"wrong type spec field", "POST", "/v1/projects", `{"name":"x","spec":{"description":7}}`, "spec.description"},
		{"description too long", "POST", "/v1/projects", `{"name":"x","spec":{"description":"` + strings.Repeat("d", 300) + `"}}`, "spec.description"},
		{"trailing data", "POST", "/v1/projects", `{"name":"x"} {}`, "body"},
		{"path and body disagree", "PUT", "/v1/projects/demo", `{"name":"other"}`, "name"},
		{"kind validation", "PUT", "/v1/projects/demo/widgets/w", `{"spec":{"size":99}}`, "spec.size"},
		{"bad since", "GET", "/v1/hosts/h1/plan?since=-1", "", "since"},
	}
	before := f.store.Epoch()
	for _, c := range cases {
		code, body := f.do(f.admin, c.method, c.path, c.body)
		var eb api.ErrorBody
		if err := json.Unmarshal(body, &eb); err != nil || eb.Error == nil {
			t.Errorf("%s: undecodable error body %s", c.name, body)
			continue
		}
		if code != 400 || eb.Error.Field != c.field {
			t.Errorf("%s: %d field %q (%s), want 400 field %q", c.name, code, eb.Error.Field, eb.Error.Message, c.field)
		}
	}
	if after := f.store.Epoch(); after != before {
		t.Fatalf("bad input moved the epoch %d -> %d", before, after)
	}
	var list []api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects", "", 200), &list)
	if len(list) != 1 {
		t.Fatalf("bad input created resources: %+v", list)
	}
}

func TestProjectTokenStaysInItsProject(t *testing.T) {
	f := newFixture(t)
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/b", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/b/widgets/w1", `{"spec":{"size":1}}`, 201)
	var nt api.NewToken
	json.Unmarshal(f.must(f.admin, "POST", "/v1/tokens", `{"name":"a-ci","role":"project","project":"a"}`, 201), &nt)
	tok := nt.Secret

	f.must(tok, "PUT", "/v1/projects/a/widgets/mine", `{"spec":{"size":2}}`, 201)
	var list []api.Resource
	json.Unmarshal(f.must(tok, "GET", "/v1/projects", "", 200), &list)
	if len(list) != 1 || list[0].Name != "a" {
		t.Fatalf("project token sees projects %+v, want only a", list)
	}
	forbidden := []struct{ method, path, body string }{
		{"GET", "/v1/projects/b", ""},
		{"GET", "/v1/projects/b/widgets", ""},
		{"GET", "/v1/projects/b/widgets/w1", ""},
		{"PUT", "/v1/projects/b/widgets/w2", `{"spec":{"size":1}}`},
		{"DELETE", "/v1/projects/b/widgets/w1", ""},
		{"POST", "/v1/projects", `{"name":"c"}`},
		{"DELETE", "/v1/projects/a", ""},
		{"GET", "/v1/hosts", ""},
		{"GET", "/v1/status", ""},
		{"GET", "/v1/tokens", ""},
	}
	for _, c := range forbidden {
		if code, body := f.do(tok, c.method, c.path, c.body); code != 403 {
			t.Errorf("%s %s with project-a token: %d %s, want 403", c.method, c.path, code, body)
		}
	}
	// Nothing changed in b.
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/b/widgets", "", 200), &list)
	if len(list) != 1 || list[0].Name != "w1" {
		t.Fatalf("project b widgets changed: %+v", list)
	}
	// An agent token reads its host's plan but not resources.
	json.Unmarshal(f.must(f.admin, "POST", "/v1/tokens", `{"name":"agent-h1","role":"agent","host":"h1"}`, 201), &nt)
	f.must(nt.Secret, "GET", "/v1/hosts/h1/plan?since=0", "", 200)
	f.must(nt.Secret, "GET", "/v1/projects", "", 403)
}

func TestProjectDeleteRefusedWhileNotEmpty(t *testing.T) {
	f := newFixture(t)
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/widgets/w", `{"spec":{"size":1}}`, 201)
	f.must(f.admin, "DELETE", "/v1/projects/a", "", 409)
	f.must(f.admin, "PUT", "/v1/projects/nope/widgets/w", `{"spec":{"size":1}}`, 404)
	f.must(f.admin, "DELETE", "/v1/projects/a/widgets/w", "", 200)
	f.must(f.admin, "DELETE", "/v1/projects/a", "", 200)
	f.must(f.admin, "DELETE", "/v1/projects/a", "", 404)
}

func TestPlanLongPollWakesOnCommitAndFiltersByHost(t *testing.T) {
	f := newFixture(t)
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201) // epoch 1
	var p api.Plan
	json.Unmarshal(f.must(f.admin, "GET", "/v1/hosts/h1/plan?since=0", "", 200), &p)
	if !p.Full || p.Epoch != 1 || len(p.Resources) != 1 {
		t.Fatalf("initial plan %+v", p)
	}
	done := make(chan api.Plan, 1)
	start := time.Now()
	go func() {
		var p api.Plan
		_, b := f.do(f.admin, "GET", "/v1/hosts/h1/plan?since=1&wait=60s", "")
		json.Unmarshal(b, &p)
		done <- p
	}()
	time.Sleep(200 * time.Millisecond)
	f.must(f.admin, "PUT", "/v1/projects/a/widgets/on-h2", `{"spec":{"size":1,"host":"h2"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/widgets/on-h1", `{"spec":{"size":1,"host":"h1"}}`, 201)
	select {
	case p = <-done:
	case <-time.After(testenv.Scale(30 * time.Second)):
		t.Fatal("long-poll did not wake on commit")
	}
	// A 60 s long-poll answered with the delta: woken by the commit, not
	// by its own expiry.
	if p.Full || len(p.Deltas) == 0 || p.Deltas[0].Epoch != 2 {
		t.Fatalf("woken plan %+v", p)
	}
	p = api.Plan{}
	json.Unmarshal(f.must(f.admin, "GET", "/v1/hosts/h1/plan?since=1", "", 200), &p)
	if len(p.Deltas) != 2 || len(p.Deltas[0].Changes) != 0 || len(p.Deltas[1].Changes) != 1 || p.Deltas[1].Changes[0].Resource.Name != "on-h1" {
		t.Fatalf("h1 should get only its widget: %+v", p)
	}
	// A long-poll with nothing new returns the same epoch after wait.
	start = time.Now()
	p = api.Plan{}
	json.Unmarshal(f.must(f.admin, "GET", "/v1/hosts/h1/plan?since=3&wait=300ms", "", 200), &p)
	if p.Epoch != 3 || len(p.Deltas) != 0 || time.Since(start) < 250*time.Millisecond {
		t.Fatalf("idle long-poll %+v after %s", p, time.Since(start))
	}
}

func TestStatusConvergence(t *testing.T) {
	f := newFixture(t,
		api.Host{Name: "h1", State: api.StateAlive, AppliedEpoch: 1},
		api.Host{Name: "h2", State: api.StateAlive, AppliedEpoch: 0},
		api.Host{Name: "h3", State: api.StateDead, AppliedEpoch: 0},
	)
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	var st api.ClusterStatus
	json.Unmarshal(f.must(f.admin, "GET", "/v1/status", "", 200), &st)
	if st.Epoch != 1 || st.Converged || len(st.Hosts) != 3 {
		t.Fatalf("status %+v", st)
	}
	st = Converged(1, []api.Host{{Name: "h1", State: api.StateAlive, AppliedEpoch: 1}, {Name: "h3", State: api.StateDead}})
	if !st.Converged {
		t.Fatalf("dead hosts with nothing on them must not block convergence: %+v", st)
	}
	// A host ahead of the store (an older copy restored) is not converged,
	// whatever its plan epoch says.
	st = ConvergedFor(8, []api.Host{{Name: "h2", State: api.StateAlive, AppliedEpoch: 9}}, func(string) uint64 { return 8 })
	if st.Converged || len(st.Reasons) != 1 || st.Reasons[0] != "h2: applied epoch 9, ahead of this store's 8: the store is an older copy" {
		t.Fatalf("host ahead of the store: %+v", st)
	}
	for _, state := range []string{api.StateDead, api.StateLeft, api.StateUnknown} {
		st = Converged(1, []api.Host{{Name: "h1", State: api.StateAlive, AppliedEpoch: 1}, {Name: "h3", State: state, AppliedEpoch: 1, Resources: 2}})
		if st.Converged || len(st.Reasons) != 1 || st.Reasons[0] != "h3: host is "+state+" with 2 resources placed on it" {
			t.Fatalf("%s host with resources: %+v", state, st)
		}
	}
	rep := api.HostReport{Host: "h1", AppliedEpoch: 1, Subsystems: []api.SubsystemStatus{{Name: "network", OK: false, Error: "boom"}}}
	b, _ := json.Marshal(rep)
	f.must(f.admin, "POST", "/v1/hosts/h1/status", string(b), 204)
	var h api.Host
	json.Unmarshal(f.must(f.admin, "GET", "/v1/hosts/h1", "", 200), &h)
	if h.Report == nil || h.Report.Subsystems[0].Error != "boom" {
		t.Fatalf("host report not kept: %+v", h)
	}
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	f := newFixture(t)
	body := f.must("", "GET", "/v1/openapi.json", "", 200)
	doc, err := openapi3.NewLoader().LoadFromData(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("OpenAPI document invalid: %v", err)
	}
	for _, p := range []string{"/v1/projects", "/v1/projects/{name}", "/v1/projects/{project}/widgets/{name}", "/v1/hosts/{host}/plan", "/v1/status"} {
		if doc.Paths.Find(p) == nil {
			t.Errorf("path %s missing", p)
		}
	}
}

func TestDrainIsCommittedAndReachesOnlyThatHost(t *testing.T) {
	f := newFixture(t, api.Host{Name: "h1", State: api.StateAlive}, api.Host{Name: "h2", State: api.StateAlive})
	var pr api.PutResult
	json.Unmarshal(f.must(f.admin, "POST", "/v1/hosts/h1/drain", `{"reason":"kernel upgrade"}`, 200), &pr)
	if !pr.Changed || pr.Epoch != 1 {
		t.Fatalf("drain: %+v", pr)
	}
	json.Unmarshal(f.must(f.admin, "POST", "/v1/hosts/h1/drain", `{"reason":"kernel upgrade"}`, 200), &pr)
	if pr.Changed || pr.Epoch != 1 {
		t.Fatalf("second drain should change nothing: %+v", pr)
	}
	var hs []api.Host
	json.Unmarshal(f.must(f.admin, "GET", "/v1/hosts", "", 200), &hs)
	if !hs[0].Drained || hs[1].Drained {
		t.Fatalf("hosts %+v", hs)
	}
	var p1, p2 api.Plan
	json.Unmarshal(f.must(f.admin, "GET", "/v1/hosts/h1/plan?since=0", "", 200), &p1)
	json.Unmarshal(f.must(f.admin, "GET", "/v1/hosts/h2/plan?since=0", "", 200), &p2)
	if len(p1.Resources) != 1 || p1.Resources[0].Kind != "hostconfig" || len(p2.Resources) != 0 {
		t.Fatalf("hostconfig should reach h1 only: h1 %+v h2 %+v", p1.Resources, p2.Resources)
	}
	f.must(f.admin, "POST", "/v1/hosts/h1/enable", "", 200)
	json.Unmarshal(f.must(f.admin, "GET", "/v1/hosts", "", 200), &hs)
	if hs[0].Drained {
		t.Fatal("enable did not undrain")
	}
	f.must(f.admin, "POST", "/v1/hosts/Bad_Host/drain", "", 400)
}

func TestIfMatchRefusesALostUpdate(t *testing.T) {
	f := newFixture(t)
	f.must(f.admin, "PUT", "/v1/projects/a", `{"spec":{"description":"one"}}`, 201)
	req, _ := http.NewRequest("GET", f.srv.URL+"/v1/projects/a", nil)
	req.Header.Set("Authorization", "Bearer "+f.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if etag != `"1"` {
		t.Fatalf("ETag %q, want \"1\"", etag)
	}
	put := func(ifMatch, body string) int {
		req, _ := http.NewRequest("PUT", f.srv.URL+"/v1/projects/a", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+f.admin)
		req.Header.Set("If-Match", ifMatch)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Someone else changes it; the first writer's update is refused.
	f.must(f.admin, "PUT", "/v1/projects/a", `{"spec":{"description":"two"}}`, 200)
	if code := put(etag, `{"spec":{"description":"three"}}`); code != 412 {
		t.Fatalf("stale If-Match: %d, want 412", code)
	}
	if code := put(`"2"`, `{"spec":{"description":"three"}}`); code != 200 {
		t.Fatalf("current If-Match: %d, want 200", code)
	}
	if code := put(`"x"`, `{}`); code != 400 {
		t.Fatalf("bad If-Match: %d, want 400", code)
	}
	var r api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/a", "", 200), &r)
	if d := decodeSpec[api.ProjectSpec](r).Description; d != "three" {
		t.Fatalf("description %q, want three", d)
	}
}

func TestDeleteHonoursIfMatch(t *testing.T) {
	f := newFixture(t)
	f.must(f.admin, "PUT", "/v1/projects/a", `{"spec":{"description":"one"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a", `{"spec":{"description":"two"}}`, 200)
	del := func(ifMatch string) int {
		req, _ := http.NewRequest("DELETE", f.srv.URL+"/v1/projects/a", nil)
		req.Header.Set("Authorization", "Bearer "+f.admin)
		req.Header.Set("If-Match", ifMatch)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := del(`"1"`); code != 412 {
		t.Fatalf("stale If-Match on DELETE: %d, want 412", code)
	}
	f.must(f.admin, "GET", "/v1/projects/a", "", 200)
	if code := del(`"x"`); code != 400 {
		t.Fatalf("bad If-Match on DELETE: %d, want 400", code)
	}
	if code := del(`"2"`); code != 200 {
		t.Fatalf("current If-Match on DELETE: %d, want 200", code)
	}
	if code := del(`"2"`); code != 412 {
		t.Fatalf("If-Match on a deleted resource: %d, want 412", code)
	}
	f.must(f.admin, "GET", "/v1/projects/a", "", 404)
}

// TestNoGhostHosts: a host known only by an old report (not in gossip)
// is listed, as unknown, only while resources are placed on it, and then
// it keeps the fleet from converging; with nothing on it, it is gone.
func TestNoGhostHosts(t *testing.T) {
	f := newFixture(t, api.Host{Name: "h1", State: api.StateAlive, AppliedEpoch: 0})
	rep, _ := json.Marshal(api.HostReport{Host: "gone", AppliedEpoch: 0})
	f.must(f.admin, "POST", "/v1/hosts/gone/status", string(rep), 204)
	names := func() []string {
		var hs []api.Host
		json.Unmarshal(f.must(f.admin, "GET", "/v1/hosts", "", 200), &hs)
		var out []string
		for _, h := range hs {
			out = append(out, h.Name+"="+h.State)
		}
		return out
	}
	if got := strings.Join(names(), ","); got != "h1=alive" {
		t.Fatalf("hosts %s: a reported host with nothing on it and not in gossip must not be listed", got)
	}
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/widgets/w", `{"spec":{"size":1,"host":"gone"}}`, 201)
	if got := strings.Join(names(), ","); got != "gone=unknown,h1=alive" {
		t.Fatalf("hosts %s: want the unknown host that has a resource", got)
	}
	var st api.ClusterStatus
	json.Unmarshal(f.must(f.admin, "GET", "/v1/status", "", 200), &st)
	if st.Converged || !strings.Contains(strings.Join(st.Reasons, ";"), "gone: host is unknown with 1 resources placed on it") {
		t.Fatalf("status %+v", st)
	}
}
