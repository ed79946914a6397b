package api

import (
	"net/http"

	"github.com/strata-infra/strata/coordinator/registry"
)

type obj = map[string]any

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

func jsonBody(schema obj) obj {
	return obj{"content": obj{"application/json": obj{"schema": schema}}}
}

func respond(desc string, schema obj) obj {
	r := obj{"description": desc}
	if schema != nil {
		r["content"] = obj{"application/json": obj{"schema": schema}}
	}
	return r
}

func errorResponses(codes ...string) obj {
	out := obj{}
	for _, c := range codes {
		out[c] = respond("error", ref("Error"))
	}
	return out
}

func op(summary string, ok obj, okCode string, params []obj, body obj, errs ...string) obj {
	resps := errorResponses(append([]string{"401", "403"}, errs...)...)
	resps[okCode] = ok
	o := obj{"summary": summary, "responses": resps}
	if len(params) > 0 {
		o["parameters"] = params
	}
	if body != nil {
		o["requestBody"] = body
	}
	return o
}

func pathParam(name string) obj {
	return obj{"name": name, "in": "path", "required": true, "schema": obj{"type": "string"}}
}

func queryParam(name, typ string) obj {
	return obj{"name": name, "in": "query", "required": false, "schema": obj{"type": typ}}
}

// Document builds the OpenAPI 3.0 description of the API for reg.
func Document(reg *registry.Registry) obj {
	str := obj{"type": "string"}
	u64 := obj{"type": "integer", "format": "int64", "minimum": 0}
	schemas := obj{
		"Error": obj{"type": "object", "properties": obj{"error": obj{"type": "object", "properties": obj{
			"code": obj{"type": "integer"}, "message": str, "field": str}}}},
		"Resource": obj{"type": "object", "properties": obj{
			"kind": str, "project": str, "name": str, "spec": obj{"type": "object"}, "epoch": u64,
			"created": obj{"type": "string", "format": "date-time"}, "updated": obj{"type": "string", "format": "date-time"},
			"status": obj{"type": "object"}}},
		"PutResult":     obj{"type": "object", "properties": obj{"resource": ref("Resource"), "changed": obj{"type": "boolean"}, "epoch": u64}},
		"DeleteResult":  obj{"type": "object", "properties": obj{"deleted": obj{"type": "boolean"}, "epoch": u64}},
		"Plan":          obj{"type": "object", "properties": obj{"host": str, "epoch": u64, "full": obj{"type": "boolean"}, "resources": obj{"type": "array", "items": ref("Resource")}, "deltas": obj{"type": "array", "items": obj{"type": "object"}}}},
		"Host":          obj{"type": "object", "properties": obj{"name": str, "addr": str, "state": obj{"type": "string", "enum": []string{"alive", "suspect", "dead", "left"}}, "applied_epoch": u64, "zone": str, "capacity": obj{"type": "object"}}},
		"HostReport":    obj{"type": "object", "properties": obj{"host": str, "applied_epoch": u64, "plan_epoch": u64, "subsystems": obj{"type": "array", "items": obj{"type": "object"}}}},
		"ClusterStatus": obj{"type": "object", "properties": obj{"epoch": u64, "converged": obj{"type": "boolean"}, "hosts": obj{"type": "array", "items": obj{"type": "object"}}}},
		"Token":         obj{"type": "object", "properties": obj{"id": str, "name": str, "role": str, "project": str, "host": str}},
		"TokenRequest": obj{"type": "object", "required": []string{"name", "role"}, "additionalProperties": false, "properties": obj{
			"name": str, "role": obj{"type": "string", "enum": []string{"admin", "agent", "project"}}, "project": str, "host": str}},
	}
	paths := obj{
		"/v1/openapi.json": obj{"get": obj{"summary": "This document", "security": []obj{}, "responses": obj{"200": respond("OpenAPI document", obj{"type": "object"})}}},
		"/v1/backup":       obj{"get": op("A consistent copy of the store (bbolt file; admin)", respond("the store file", obj{"type": "string", "format": "binary"}), "200", nil, nil)},
		"/v1/status":       obj{"get": op("Cluster epoch, each host's applied epoch and liveness, convergence", respond("status", ref("ClusterStatus")), "200", nil, nil)},
		"/v1/hosts":        obj{"get": op("Hosts from gossip with their last reports", respond("hosts", obj{"type": "array", "items": ref("Host")}), "200", nil, nil)},
		"/v1/hosts/{host}": obj{"get": op("One host", respond("host", ref("Host")), "200", []obj{pathParam("host")}, nil, "404")},
		"/v1/hosts/{host}/plan": obj{"get": op("Long-poll the host's plan after epoch since",
			respond("deltas after since, or the full plan", ref("Plan")), "200",
			[]obj{pathParam("host"), queryParam("since", "integer"), queryParam("wait", "string")}, nil, "400")},
		"/v1/hosts/{host}/status": obj{"post": op("An agent's status report", respond("recorded", nil), "204", []obj{pathParam("host")}, jsonBody(ref("HostReport")), "400")},
		"/v1/hosts/{host}/drain":  obj{"post": op("Drain a host: no new placements", respond("hostconfig written", ref("PutResult")), "200", []obj{pathParam("host")}, nil, "400")},
		"/v1/hosts/{host}/enable": obj{"post": op("Undrain a host", respond("hostconfig written", ref("PutResult")), "200", []obj{pathParam("host")}, nil, "400")},
		"/v1/tokens": obj{
			"get":  op("List tokens (never secrets)", respond("tokens", obj{"type": "array", "items": ref("Token")}), "200", nil, nil),
			"post": op("Create a token; the secret is shown once", respond("token with secret", ref("Token")), "201", nil, jsonBody(ref("TokenRequest")), "400"),
		},
		"/v1/tokens/{id}": obj{"delete": op("Revoke a token", respond("revoked", nil), "200", []obj{pathParam("id")}, nil, "404")},
		"/v1/kinds":       obj{"get": op("Resource kinds in apply order", respond("kinds", obj{"type": "array", "items": obj{"type": "object"}}), "200", nil, nil)},
	}
	for _, k := range reg.Kinds() {
		specName := k.Name + "Spec"
		schemas[specName] = k.Schema
		if k.Schema == nil {
			schemas[specName] = obj{"type": "object"}
		}
		req := jsonBody(obj{"type": "object", "additionalProperties": false, "properties": obj{"name": str, "spec": ref(specName)}})
		base := "/v1/" + k.Plural
		var params []obj
		if k.Scope == registry.Project {
			base = "/v1/projects/{project}/" + k.Plural
			params = []obj{pathParam("project")}
		}
		named := append(append([]obj{}, params...), pathParam("name"))
		paths[base] = obj{
			"get":  op("List "+k.Plural, respond(k.Plural, obj{"type": "array", "items": ref("Resource")}), "200", params, nil),
			"post": op("Create a "+k.Name, respond("created", ref("PutResult")), "201", params, req, "400", "404", "409"),
		}
		paths[base+"/{name}"] = obj{
			"get":    op("Show a "+k.Name, respond(k.Name, ref("Resource")), "200", named, nil, "404"),
			"put":    op("Create or update a "+k.Name+" (idempotent)", respond("unchanged or updated", ref("PutResult")), "200", named, req, "400", "404", "409"),
			"delete": op("Delete a "+k.Name, respond("deleted", ref("DeleteResult")), "200", named, nil, "404", "409"),
		}
	}
	return obj{
		"openapi": "3.0.3",
		"info":    obj{"title": "Strata coordinator API", "version": "v1"},
		"components": obj{
			"securitySchemes": obj{"bearer": obj{"type": "http", "scheme": "bearer"}},
			"schemas":         schemas,
		},
		"security": []obj{{"bearer": []string{}}},
		"paths":    paths,
	}
}

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Document(s.reg))
}
