package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3gen"

	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/version"
)

// The OpenAPI document is built from kin-openapi's types. Schemas of the
// bodies come from the Go types the handlers encode (openapi3gen), so the
// document cannot drift from what is sent; each kind's spec schema comes
// from its registry entry. TestOpenAPICoversRoutes holds the document
// against the routes the server really serves, in both directions.

// nilEncodesNull marks a slice or map field without omitempty nullable:
// encoding/json writes a nil one as null, and the document must say so
// (HostReport.physnets uses null for "the agent does not say").
func nilEncodesNull(_ string, t reflect.Type, tag reflect.StructTag, s *openapi3.Schema) error {
	if t.Kind() != reflect.Slice && t.Kind() != reflect.Map || t == reflect.TypeFor[json.RawMessage]() {
		return nil
	}
	if name, _, ok := strings.Cut(tag.Get("json"), ","); tag.Get("json") != "" && (!ok || !strings.Contains(tag.Get("json"), "omitempty")) && name != "-" {
		s.Nullable = true
	}
	return nil
}

// schemaFor generates the schema of a Go value's JSON form.
func schemaFor(v any) *openapi3.SchemaRef {
	ref, err := openapi3gen.NewSchemaRefForValue(v, nil, openapi3gen.SchemaCustomizer(nilEncodesNull))
	if err != nil {
		panic(fmt.Sprintf("openapi: schema for %T: %v", v, err)) // a programming error, caught by the tests
	}
	return ref
}

func schemaRef(name string) *openapi3.SchemaRef {
	return openapi3.NewSchemaRef("#/components/schemas/"+name, nil)
}

func arrayOf(items *openapi3.SchemaRef) *openapi3.SchemaRef {
	s := openapi3.NewArraySchema()
	s.Items = items
	return s.NewRef()
}

func jsonResponse(desc string, schema *openapi3.SchemaRef) *openapi3.ResponseRef {
	r := openapi3.NewResponse().WithDescription(desc)
	if schema != nil {
		r.Content = openapi3.NewContentWithJSONSchemaRef(schema)
	}
	return &openapi3.ResponseRef{Value: r}
}

// operation is one documented route.
type operation struct {
	method, path, id, tag, summary string
	public                         bool // no bearer token
	params                         openapi3.Parameters
	body                           *openapi3.SchemaRef
	okCode                         int
	ok                             *openapi3.ResponseRef
	errs                           []int
	etag                           bool // the 2xx answer carries an ETag
}

func pathParam(name, desc string) *openapi3.ParameterRef {
	p := openapi3.NewPathParameter(name).WithSchema(openapi3.NewStringSchema())
	p.Description = desc
	return &openapi3.ParameterRef{Value: p}
}

func queryParam(name, desc string, schema *openapi3.Schema) *openapi3.ParameterRef {
	p := openapi3.NewQueryParameter(name).WithSchema(schema)
	p.Description = desc
	return &openapi3.ParameterRef{Value: p}
}

var ifMatch = &openapi3.ParameterRef{Value: &openapi3.Parameter{
	Name: "If-Match", In: openapi3.ParameterInHeader,
	Description: `The resource's epoch from a GET's ETag ("12"): the write is refused with 412 when the resource changed since.`,
	Schema:      openapi3.NewStringSchema().NewRef(),
}}

var errorText = map[int]string{
	400: "bad input; error.field names the field",
	401: "missing or invalid bearer token",
	403: "this token may not do this",
	404: "no such resource or host",
	409: "conflicts with another resource (in use, already exists, overlaps)",
	412: "If-Match names an epoch other than the resource's: it changed since you read it",
	503: "not ready",
}

// fixedOperations are the routes that are not per kind.
func fixedOperations() []operation {
	host := pathParam("host", "host name")
	str := openapi3.NewStringSchema()
	drainBody := schemaFor(drainRequest{})
	health := schemaFor(healthAnswer{})
	return []operation{
		{method: "GET", path: "/healthz", id: "getHealth", tag: "health", summary: "Liveness: the process serves HTTP", public: true, okCode: 200, ok: jsonResponse("alive", health)},
		{method: "GET", path: "/readyz", id: "getReady", tag: "health", summary: "Readiness: the store answers", public: true, okCode: 200, ok: jsonResponse("ready", health), errs: []int{503}},
		{method: "GET", path: "/v1/openapi.json", id: "getOpenAPI", tag: "meta", summary: "This document", public: true, okCode: 200, ok: jsonResponse("OpenAPI 3 document", openapi3.NewObjectSchema().NewRef())},
		{method: "GET", path: "/v1/version", id: "getVersion", tag: "meta", summary: "The coordinator's build", okCode: 200, ok: jsonResponse("version", schemaFor(version.Info{}))},
		{method: "GET", path: "/v1/kinds", id: "listKinds", tag: "meta", summary: "Resource kinds in apply order", okCode: 200, ok: jsonResponse("kinds", arrayOf(schemaFor(kindInfo{})))},
		{method: "GET", path: "/v1/status", id: "getClusterStatus", tag: "hosts", summary: "Cluster epoch, each host's applied epoch and liveness, convergence (admin)", okCode: 200, ok: jsonResponse("status", schemaRef("ClusterStatus"))},
		{method: "GET", path: "/v1/hosts", id: "listHosts", tag: "hosts", summary: "Hosts from gossip with their last reports (admin)", okCode: 200, ok: jsonResponse("hosts", arrayOf(schemaRef("Host")))},
		{method: "GET", path: "/v1/hosts/{host}", id: "getHost", tag: "hosts", summary: "One host (admin)", params: openapi3.Parameters{host}, okCode: 200, ok: jsonResponse("host", schemaRef("Host")), errs: []int{404}},
		{method: "GET", path: "/v1/hosts/{host}/plan", id: "getHostPlan", tag: "agents", summary: "Long-poll the host's plan after epoch since (the host's agent token)",
			params: openapi3.Parameters{host,
				queryParam("since", "the epoch the host has applied", openapi3.NewInt64Schema().WithMin(0)),
				queryParam("wait", "how long to hold the request for the next commit, e.g. 30s", str),
				queryParam("history", "the store history the host's epoch belongs to", str),
				queryParam("storage", "true for the storage plan (a host running the storage controller): every volume and volume snapshot besides the host's own plan", openapi3.NewBoolSchema())},
			okCode: 200, ok: jsonResponse("the deltas after since, or the full plan", schemaRef("Plan")), errs: []int{400, 409}},
		{method: "POST", path: "/v1/hosts/{host}/status", id: "postHostReport", tag: "agents", summary: "An agent's status report (the host's agent token)", params: openapi3.Parameters{host},
			body: schemaRef("HostReport"), okCode: 204, ok: jsonResponse("recorded", nil), errs: []int{400}},
		{method: "PUT", path: "/v1/hosts/{host}/identity", id: "putHostIdentity", tag: "agents", summary: "Bind the host's gossip address and VTEP to its name (the host's agent token)", params: openapi3.Parameters{host},
			body: schemaFor(api.HostIdentitySpec{}), okCode: 200, ok: jsonResponse("hostidentity written", schemaRef("PutResult")), errs: []int{400, 409}},
		{method: "POST", path: "/v1/hosts/{host}/drain", id: "drainHost", tag: "hosts", summary: "Drain a host: no new placements (admin)", params: openapi3.Parameters{host},
			body: drainBody, okCode: 200, ok: jsonResponse("hostconfig written", schemaRef("PutResult")), errs: []int{400}},
		{method: "POST", path: "/v1/hosts/{host}/enable", id: "enableHost", tag: "hosts", summary: "Undrain a host (admin)", params: openapi3.Parameters{host},
			okCode: 200, ok: jsonResponse("hostconfig written", schemaRef("PutResult")), errs: []int{400}},
		{method: "POST", path: "/v1/gossip/rotate-key", id: "rotateGossipKey", tag: "hosts", summary: "Rotate the gossip key across the fleet (admin)",
			okCode: 200, ok: jsonResponse("rotated", schemaFor(api.GossipRotateResult{})), errs: []int{409}},
		{method: "GET", path: "/v1/tokens", id: "listTokens", tag: "tokens", summary: "List tokens, never their secrets (admin)", okCode: 200, ok: jsonResponse("tokens", arrayOf(schemaFor(api.Token{})))},
		{method: "POST", path: "/v1/tokens", id: "createToken", tag: "tokens", summary: "Create a token; the secret is shown once (admin)",
			body: schemaFor(api.TokenRequest{}), okCode: 201, ok: jsonResponse("the token with its secret", schemaFor(api.NewToken{})), errs: []int{400}},
		{method: "DELETE", path: "/v1/tokens/{id}", id: "deleteToken", tag: "tokens", summary: "Revoke a token (admin)", params: openapi3.Parameters{pathParam("id", "token id")},
			okCode: 200, ok: jsonResponse("revoked", schemaFor(map[string]bool{})), errs: []int{404}},
		{method: "GET", path: "/v1/projects/{project}/quota", id: "getProjectQuota", tag: "projects", summary: "A project's limits and what it holds",
			params: openapi3.Parameters{pathParam("project", "project name")}, okCode: 200, ok: jsonResponse("limits and usage", schemaFor(api.QuotaUsage{})), errs: []int{404}},
		{method: "POST", path: "/v1/dry-run", id: "dryRun", tag: "resources", summary: "Admit resources in order as writes would, store nothing: what each write would do",
			body: schemaFor(api.DryRunRequest{}), okCode: 200, ok: jsonResponse("each resource before and after", schemaFor(api.DryRunResult{})), errs: []int{400, 404, 409}},
		{method: "GET", path: "/v1/backup", id: "getBackup", tag: "meta", summary: "A consistent copy of the store, a bbolt file (admin)", okCode: 200,
			ok: &openapi3.ResponseRef{Value: openapi3.NewResponse().WithDescription("the store file").WithContent(openapi3.Content{
				"application/octet-stream": &openapi3.MediaType{Schema: openapi3.NewStringSchema().WithFormat("binary").NewRef()}})}},
	}
}

// exported turns a kind name into an identifier part: "floatingip" -> "Floatingip".
func exported(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

// kindOperations documents the five routes of a kind; its resources carry
// the kind's own spec schema.
func kindOperations(k *registry.Kind) []operation {
	base, params := "/v1/"+k.Plural, openapi3.Parameters{}
	if k.Scope == registry.Project {
		base = "/v1/projects/{project}/" + k.Plural
		params = append(params, pathParam("project", "project name"))
	}
	named := append(append(openapi3.Parameters{}, params...), pathParam("name", k.Name+" name"))
	res, tag, K := schemaRef(exported(k.Name)+"Resource"), k.Plural, exported(k.Name)
	body := schemaRef(K + "Request")
	return []operation{
		{method: "GET", path: base, id: "list" + exported(k.Plural), tag: tag, summary: "List " + k.Plural, params: params,
			okCode: 200, ok: jsonResponse(k.Plural, arrayOf(res)), errs: []int{404}},
		{method: "POST", path: base, id: "create" + K, tag: tag, summary: "Create a " + k.Name, params: params, body: body,
			okCode: 201, ok: jsonResponse("created", schemaRef(K+"PutResult")), errs: []int{400, 404, 409}, etag: true},
		{method: "GET", path: base + "/{name}", id: "get" + K, tag: tag, summary: "Show a " + k.Name + " with its status on each host", params: named,
			okCode: 200, ok: jsonResponse(k.Name, res), errs: []int{404}, etag: true},
		{method: "PUT", path: base + "/{name}", id: "put" + K, tag: tag, summary: "Create or update a " + k.Name + " (idempotent; If-Match for read-modify-write)",
			params: append(append(openapi3.Parameters{}, named...), ifMatch), body: body,
			okCode: 200, ok: jsonResponse("unchanged or updated (201 when created)", schemaRef(K+"PutResult")), errs: []int{400, 404, 409, 412}, etag: true},
		{method: "DELETE", path: base + "/{name}", id: "delete" + K, tag: tag, summary: "Delete a " + k.Name + " (If-Match to delete only the version read)",
			params: append(append(openapi3.Parameters{}, named...), ifMatch),
			okCode: 200, ok: jsonResponse("deleted", schemaRef("DeleteResult")), errs: []int{400, 404, 409, 412}},
	}
}

// kindSchemas are a kind's spec, resource, request and put-result schemas.
func kindSchemas(k *registry.Kind, schemas openapi3.Schemas) {
	K := exported(k.Name)
	spec := openapi3.NewObjectSchema().NewRef()
	if k.Schema != nil {
		b, _ := json.Marshal(k.Schema)
		var s openapi3.Schema
		if err := json.Unmarshal(b, &s); err != nil {
			panic(fmt.Sprintf("openapi: kind %s schema: %v", k.Name, err))
		}
		spec = s.NewRef()
	}
	schemas[K+"Spec"] = spec
	res := schemaFor(api.Resource{}).Value
	resCopy := *res
	resCopy.Properties = openapi3.Schemas{}
	for name, p := range res.Properties {
		resCopy.Properties[name] = p
	}
	resCopy.Properties["spec"] = schemaRef(K + "Spec")
	resCopy.Properties["kind"] = openapi3.NewStringSchema().WithEnum(k.Name).NewRef()
	schemas[K+"Resource"] = resCopy.NewRef()
	req := openapi3.NewObjectSchema().WithProperty("name", openapi3.NewStringSchema())
	req.Properties["spec"] = schemaRef(K + "Spec")
	req.AdditionalProperties = openapi3.AdditionalProperties{Has: openapi3.Ptr(false)}
	schemas[K+"Request"] = req.NewRef()
	putBase := schemaFor(api.PutResult{}).Value
	put := *putBase
	put.Properties = openapi3.Schemas{}
	for name, p := range putBase.Properties {
		put.Properties[name] = p
	}
	put.Properties["resource"] = schemaRef(K + "Resource")
	schemas[K+"PutResult"] = put.NewRef()
}

// operations is every documented route, fixed ones first, then the kinds'.
func operations(reg *registry.Registry) []operation {
	ops := fixedOperations()
	for _, k := range reg.Kinds() {
		ops = append(ops, kindOperations(k)...)
	}
	return ops
}

// Document builds the OpenAPI 3 description of the API for reg.
func Document(reg *registry.Registry) *openapi3.T {
	schemas := openapi3.Schemas{
		"PutResult":     schemaFor(api.PutResult{}),
		"DeleteResult":  schemaFor(api.DeleteResult{}),
		"Plan":          schemaFor(api.Plan{}),
		"Host":          schemaFor(api.Host{}),
		"HostReport":    schemaFor(api.HostReport{}),
		"ClusterStatus": schemaFor(api.ClusterStatus{}),
	}
	// An error's body is {"error": {...}}.
	errBody := openapi3.NewObjectSchema()
	errBody.Properties = openapi3.Schemas{"error": schemaFor(api.Error{})}
	schemas["Error"] = errBody.NewRef()
	for _, k := range reg.Kinds() {
		kindSchemas(k, schemas)
	}
	doc := &openapi3.T{
		OpenAPI: "3.0.3",
		Info:    &openapi3.Info{Title: "Strata coordinator API", Version: "v1", Description: "Desired state of a Strata cluster. Every write returns the cluster epoch it committed at."},
		Paths:   openapi3.NewPaths(),
		Components: &openapi3.Components{
			Schemas: schemas,
			SecuritySchemes: openapi3.SecuritySchemes{
				"bearer": &openapi3.SecuritySchemeRef{Value: openapi3.NewJWTSecurityScheme().WithBearerFormat("opaque")},
			},
		},
		Security: openapi3.SecurityRequirements{{"bearer": []string{}}},
	}
	tags := map[string]bool{}
	for _, o := range operations(reg) {
		op := openapi3.NewOperation()
		op.OperationID, op.Summary, op.Tags, op.Parameters = o.id, o.summary, []string{o.tag}, o.params
		if !tags[o.tag] {
			tags[o.tag] = true
			doc.Tags = append(doc.Tags, &openapi3.Tag{Name: o.tag})
		}
		if o.public {
			op.Security = &openapi3.SecurityRequirements{}
		}
		if o.body != nil {
			op.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithRequired(true).WithJSONSchemaRef(o.body)}
		}
		ok := o.ok
		if o.etag {
			v := *ok.Value
			v.Headers = openapi3.Headers{"ETag": &openapi3.HeaderRef{Value: &openapi3.Header{Parameter: openapi3.Parameter{
				Description: "the resource's epoch, quoted: send it back as If-Match", Schema: openapi3.NewStringSchema().NewRef()}}}}
			ok = &openapi3.ResponseRef{Value: &v}
		}
		op.Responses = openapi3.NewResponses()
		op.Responses.Delete("default")
		op.Responses.Set(fmt.Sprint(o.okCode), ok)
		if o.okCode == 200 && o.method == "PUT" {
			op.Responses.Set("201", ok)
		}
		errs := o.errs
		if !o.public {
			errs = append([]int{401, 403}, errs...)
		}
		for _, c := range errs {
			op.Responses.Set(fmt.Sprint(c), jsonResponse(errorText[c], schemaRef("Error")))
		}
		item := doc.Paths.Value(o.path)
		if item == nil {
			item = &openapi3.PathItem{}
			doc.Paths.Set(o.path, item)
		}
		item.SetOperation(o.method, op)
	}
	return doc
}

var (
	docOnce sync.Once
	docJSON []byte
)

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) {
	docOnce.Do(func() { docJSON, _ = json.MarshalIndent(Document(s.reg), "", "  ") })
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(docJSON)
}

// healthAnswer is the body of /healthz and /readyz.
type healthAnswer struct {
	Status string `json:"status"`
	Epoch  uint64 `json:"epoch,omitempty"`
	Error  string `json:"error,omitempty"`
}

// healthz answers while the process serves HTTP: a load balancer's or
// systemd's liveness check, no token needed.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, healthAnswer{Status: "ok"})
}

// readyz answers 200 once the store answers a read transaction, else 503.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.store == nil {
		writeJSON(w, http.StatusServiceUnavailable, healthAnswer{Status: "not ready", Error: "no store"})
		return
	}
	if err := s.store.View(func(*store.Tx) error { return nil }); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, healthAnswer{Status: "not ready", Error: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, healthAnswer{Status: "ok", Epoch: s.store.Epoch()})
}

func (s *Server) version(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, version.Get())
}
