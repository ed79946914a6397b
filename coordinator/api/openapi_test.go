package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

// validating checks every request to next and every answer from it
// against the OpenAPI document, and records what does not match.
type validating struct {
	next   http.Handler
	router routers.Router
	mu     sync.Mutex
	errs   []string
	seen   map[string]bool // operation ids exercised
}

func (v *validating) fail(format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, fmt.Sprintf(format, args...))
}

func (v *validating) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := v.router.FindRoute(r)
	if err != nil {
		v.fail("%s %s: not in the document: %v", r.Method, r.URL.Path, err)
		v.next.ServeHTTP(w, r)
		return
	}
	v.mu.Lock()
	v.seen[route.Operation.OperationID] = true
	v.mu.Unlock()
	in := &openapi3filter.RequestValidationInput{Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	rec := httptest.NewRecorder()
	// A request the document forbids must also be one the server refuses.
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	r.Body = io.NopCloser(bytes.NewReader(body))
	v.next.ServeHTTP(rec, r)
	if reqErr != nil && rec.Code < 400 {
		v.fail("%s %s: the document refuses the request (%v) but the server answered %d", r.Method, r.URL.Path, reqErr, rec.Code)
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.Code, Header: rec.Header(),
		Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	out.SetBodyBytes(rec.Body.Bytes())
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		v.fail("%s %s -> %d: answer does not match the document: %v\n%s", r.Method, r.URL.Path, rec.Code, err, rec.Body.String())
	}
	for k, vs := range rec.Header() {
		w.Header()[k] = vs
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// TestOpenAPICoversRoutes: every route served is in the document and every
// documented operation is served; the document validates; and the
// project's own client, round-tripping each kind through a server that
// checks every request and answer against the document, finds no mismatch.
func TestOpenAPICoversRoutes(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "c.db"), store.Options{RetainDeltas: 50})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := registry.Default()
	hosts := staticHosts{{Name: "h1", State: api.StateAlive, Physnets: []string{"physnet1"},
		Capacity: api.Capacity{VCPUs: 64, RAMMiB: 65536, DiskGiB: 1000}}}
	server := New(Options{Store: st, Registry: reg, Hosts: hosts, MaxWait: time.Second})
	// Loaded from its JSON, as a client sees it: references resolved.
	raw, err := json.Marshal(Document(reg))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		t.Fatalf("the document does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the document does not validate: %v", err)
	}

	// Routes against operations, both ways.
	documented := map[string]string{}
	for _, path := range doc.Paths.InMatchingOrder() {
		for method, op := range doc.Paths.Value(path).Operations() {
			documented[method+" "+path] = op.OperationID
			if op.OperationID == "" || len(op.Tags) == 0 {
				t.Errorf("%s %s has no operationId or tag", method, path)
			}
		}
	}
	served := map[string]bool{}
	for _, route := range server.Routes() {
		served[route] = true
		if _, ok := documented[route]; !ok {
			t.Errorf("route %q is served but not documented", route)
		}
	}
	ids := map[string]string{}
	for route, id := range documented {
		if !served[route] {
			t.Errorf("operation %s (%s) is documented but not served", id, route)
		}
		if other, dup := ids[id]; dup {
			t.Errorf("operationId %s used by %s and %s", id, route, other)
		}
		ids[id] = route
	}
	if t.Failed() {
		t.FailNow()
	}

	// What the server sends is what the document says: served as JSON.
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	v := &validating{next: server, router: router, seen: map[string]bool{}}
	srv := httptest.NewServer(v)
	t.Cleanup(srv.Close)
	adminTok, err := IssueToken(st, api.TokenRequest{Name: "admin", Role: api.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	agentTok, err := IssueToken(st, api.TokenRequest{Name: "h1", Role: api.RoleAgent, Host: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	admin, agent := apiclient.New(srv.URL, adminTok.Secret), apiclient.New(srv.URL, agentTok.Secret)
	do := func(c *apiclient.Client, method, path string, in any) {
		t.Helper()
		var out json.RawMessage
		if err := c.Do(ctx, method, path, in, &out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	var served0 json.RawMessage
	if err := admin.Do(ctx, "GET", "/v1/openapi.json", nil, &served0); err != nil {
		t.Fatal(err)
	}
	if _, err := openapi3.NewLoader().LoadFromData(served0); err != nil {
		t.Fatalf("served document does not load: %v", err)
	}

	// Each kind, in apply order: create, show, list, update with If-Match.
	// Then delete in reverse order.
	type item struct{ plural, project, name, spec string }
	items := []item{
		{"projects", "", "demo", `{"description":"round trip"}`},
		{"externalnetworks", "", "ext", `{"physical_network":"physnet1","cidr":"203.0.113.0/24","gateway":"203.0.113.1"}`},
		{"flavors", "", "small", `{"vcpus":1,"ram_mib":256,"disk_gib":1}`},
		{"images", "", "cirros", `{"format":"qcow2","path":"/var/lib/strata/images/cirros.qcow2"}`},
		{"aggregates", "", "ssd", `{"hosts":["h1"],"metadata":{"disk":"ssd"}}`},
		{"networks", "demo", "net", `{}`},
		{"subnets", "demo", "sub", `{"network":"net","cidr":"10.0.0.0/24"}`},
		{"securitygroups", "demo", "web", `{"rules":[{"direction":"ingress","protocol":"tcp","ports":"80"}]}`},
		{"ports", "demo", "p1", `{"network":"net","host":"h1"}`},
		{"routers", "demo", "r1", `{"external_network":"ext","interfaces":[{"subnet":"sub"}]}`},
		{"floatingips", "demo", "fip", `{"external_network":"ext","port":"p1"}`},
		{"servergroups", "demo", "grp", `{"policy":"anti-affinity"}`},
		{"instances", "demo", "vm", `{"flavor":"small","image":"cirros","networks":["net"]}`},
		{"firewallgroups", "demo", "fw", `{"router":"r1","ingress":{"rules":[{"protocol":"tcp","destination_ports":"22","action":"allow"}]}}`},
		{"volumetypes", "", "rbd", `{"pool":"volumes"}`},
		{"volumes", "demo", "data", `{"size_gib":1,"type":"rbd"}`},
		{"volumesnapshots", "demo", "snap", `{"volume":"data"}`},
	}
	kinds := map[string]bool{}
	for _, it := range items {
		kinds[it.plural] = true
		path := apiclient.ResourcePath(it.plural, it.project, it.name)
		base := apiclient.ResourcePath(it.plural, it.project, "")
		do(admin, "POST", base, api.ResourceRequest{Name: it.name, Spec: json.RawMessage(it.spec)})
		var got api.Resource
		if err := admin.Do(ctx, "GET", path, nil, &got); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		do(admin, "GET", base, nil)
		if err := admin.DoHeader(ctx, "PUT", path, apiclient.IfMatch(got.Epoch), api.ResourceRequest{Name: it.name, Spec: got.Spec}, nil); err != nil {
			t.Fatalf("PUT %s with If-Match: %v", path, err)
		}
		// A stale If-Match is refused with 412, as documented.
		err := admin.DoHeader(ctx, "PUT", path, apiclient.IfMatch(got.Epoch+1000), api.ResourceRequest{Name: it.name, Spec: got.Spec}, nil)
		if err == nil || !strings.Contains(err.Error(), "412") {
			t.Errorf("PUT %s with a stale If-Match: %v, want 412", path, err)
		}
	}
	// Kinds not written above are listed and shown (404).
	for _, k := range reg.Kinds() {
		if kinds[k.Plural] {
			continue
		}
		project := ""
		if k.Scope == registry.Project {
			project = "demo"
		}
		do(admin, "GET", apiclient.ResourcePath(k.Plural, project, ""), nil)
		var out json.RawMessage
		if err := admin.Do(ctx, "GET", apiclient.ResourcePath(k.Plural, project, "none"), nil, &out); err == nil {
			t.Errorf("GET %s/none found something", k.Plural)
		}
	}
	// Host, agent and token routes.
	var plan api.Plan
	if err := agent.Do(ctx, "GET", "/v1/hosts/h1/plan?since=0", nil, &plan); err != nil {
		t.Fatal(err)
	}
	if err := agent.Report(ctx, api.HostReport{Host: "h1", AppliedEpoch: plan.Epoch, PlanEpoch: plan.Epoch}); err != nil {
		t.Fatal(err)
	}
	do(agent, "PUT", "/v1/hosts/h1/identity", api.HostIdentitySpec{Addr: "192.0.2.10", VTEP: "192.0.2.10"})
	for _, p := range []string{"/v1/projects/demo/quota", "/healthz", "/readyz", "/v1/version", "/v1/kinds", "/v1/status", "/v1/hosts", "/v1/hosts/h1", "/v1/tokens"} {
		do(admin, "GET", p, nil)
	}
	do(admin, "POST", "/v1/hosts/h1/drain", map[string]string{"reason": "round trip"})
	do(admin, "POST", "/v1/hosts/h1/enable", nil)
	var nt api.NewToken
	if err := admin.Do(ctx, "POST", "/v1/tokens", api.TokenRequest{Name: "ci", Role: api.RoleAdmin}, &nt); err != nil {
		t.Fatal(err)
	}
	do(admin, "DELETE", "/v1/tokens/"+nt.ID, nil)
	resp, err := http.Get(srv.URL + "/v1/backup") // 401 without a token, as documented
	if err == nil {
		resp.Body.Close()
	}
	for i := len(items) - 1; i >= 0; i-- {
		it := items[i]
		do(admin, "DELETE", apiclient.ResourcePath(it.plural, it.project, it.name), nil)
	}

	for _, e := range v.errs {
		t.Error(e)
	}
	var unexercised []string
	for route, id := range documented {
		if !v.seen[id] && !strings.Contains(route, "rotate-key") && !strings.Contains(route, "/backup") {
			unexercised = append(unexercised, id)
		}
	}
	sort.Strings(unexercised)
	t.Logf("%d operations documented and served; %d exercised against the document; not exercised: %v", len(documented), len(v.seen), unexercised)
}
