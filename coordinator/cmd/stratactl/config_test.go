package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// bare runs stratactl with only args: no --endpoint or --token-file.
func bare(args ...string) (string, error) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// TestContextsVersionAndYAML: a context carries endpoint, token file and
// project, so commands need no flags; flags beat the environment, which
// beats the context; version asks the server; -o yaml is the JSON's fields.
func TestContextsVersionAndYAML(t *testing.T) {
	c := newCLI(t)
	cfg := filepath.Join(t.TempDir(), "strata", "config.yaml")
	for _, e := range []string{"STRATA_ENDPOINT", "STRATA_TOKEN_FILE", "STRATA_TOKEN", "STRATA_CA_FILE", "STRATA_PROJECT", "STRATA_CONTEXT"} {
		t.Setenv(e, "")
	}
	t.Setenv("STRATA_CONFIG", cfg)

	if _, err := bare("networks", "list"); err == nil || !strings.Contains(err.Error(), "--project is required") {
		t.Fatalf("no context, no project: %v", err)
	}
	out, err := bare("--endpoint", c.url, "--token-file", c.tokenFile, "config", "set-context", "lab", "--project", "p")
	if err != nil {
		t.Fatalf("set-context: %v\n%s", err, out)
	}
	if st, err := os.Stat(cfg); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", st, err)
	}
	if out, _ := bare("config", "get-contexts"); !strings.Contains(out, "*") || !strings.Contains(out, "lab") || !strings.Contains(out, c.url) {
		t.Fatalf("get-contexts:\n%s", out)
	}
	// No flags at all: the context's endpoint, token file and project.
	if out, err := bare("networks", "create", "app"); err != nil {
		t.Fatalf("networks create through the context: %v\n%s", err, out)
	}
	out, err = bare("networks", "list", "-o", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	var list []struct {
		Name    string
		Project string
	}
	if err := yaml.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0].Name != "app" || list[0].Project != "p" {
		t.Fatalf("-o yaml: %v %+v\n%s", err, list, out)
	}

	// The environment beats the context, a flag beats the environment.
	t.Setenv("STRATA_ENDPOINT", "http://127.0.0.1:1")
	if _, err := bare("networks", "list"); err == nil {
		t.Fatal("STRATA_ENDPOINT did not override the context's endpoint")
	}
	if out, err := bare("--endpoint", c.url, "networks", "list"); err != nil || !strings.Contains(out, "app") {
		t.Fatalf("--endpoint did not override STRATA_ENDPOINT: %v\n%s", err, out)
	}
	t.Setenv("STRATA_ENDPOINT", "")

	if _, err := bare("--context", "prod", "networks", "list"); err == nil || !strings.Contains(err.Error(), `context "prod"`) {
		t.Fatalf("unknown context: %v", err)
	}
	if _, err := bare("config", "use-context", "prod"); err == nil {
		t.Fatal("use-context of an unknown context succeeded")
	}

	var v versions
	out, err = bare("version", "-o", "json")
	if err != nil {
		t.Fatalf("version: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Client.Version == "" || v.Server == nil || v.Server.Version != v.Client.Version || v.Server.GoVersion == "" {
		t.Fatalf("version: %v %+v\n%s", err, v, out)
	}
	if out, err := bare("--endpoint", "http://127.0.0.1:1", "version", "--client"); err != nil || strings.Contains(out, "server") {
		t.Fatalf("version --client asked a server: %v\n%s", err, out)
	}
	if _, err := bare("networks", "list", "-o", "xml"); err == nil || !strings.Contains(err.Error(), "table, json or yaml") {
		t.Fatalf("-o xml: %v", err)
	}
}
