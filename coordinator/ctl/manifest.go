// Package ctl is stratactl's logic: manifests (multi-document YAML of
// resources), apply and delete in dependency order, and output formats.
package ctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// Doc is one resource in a manifest.
type Doc struct {
	Kind    string          `json:"kind"`
	Project string          `json:"project,omitempty"`
	Name    string          `json:"name"`
	Spec    json.RawMessage `json:"spec,omitempty"`
	// Index is the document's position in the file, for messages.
	Index int `json:"-"`
}

// KindInfo is what the coordinator says about a kind (GET /v1/kinds).
type KindInfo struct {
	Name       string `json:"name"`
	Plural     string `json:"plural"`
	Scope      string `json:"scope"`
	Order      int    `json:"order"`
	AdminWrite bool   `json:"admin_write"`
}

// ParseManifest reads every YAML document of r; empty documents are skipped.
func ParseManifest(r io.Reader) ([]Doc, error) {
	dec := yamlv3.NewDecoder(r)
	var docs []Doc
	for i := 1; ; i++ {
		var node yamlv3.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(node.Content) == 0 || (node.Content[0].Kind == yamlv3.ScalarNode && node.Content[0].Tag == "!!null") {
			continue // an empty or comment-only document
		}
		var buf bytes.Buffer
		enc := yamlv3.NewEncoder(&buf)
		if err := enc.Encode(&node); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		var d Doc
		if err := yaml.UnmarshalStrict(buf.Bytes(), &d); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		d.Index = i
		docs = append(docs, d)
	}
	return docs, nil
}

// Check validates docs against the known kinds and sorts them for apply:
// by kind order, then file order. Errors name the document and field.
func Check(docs []Doc, kinds map[string]KindInfo) ([]Doc, error) {
	for _, d := range docs {
		k, ok := kinds[d.Kind]
		switch {
		case d.Kind == "":
			return nil, fmt.Errorf("document %d: kind: must be set", d.Index)
		case !ok:
			return nil, fmt.Errorf("document %d: kind: %q is not a kind this coordinator serves (%s)", d.Index, d.Kind, kindNames(kinds))
		case d.Name == "":
			return nil, fmt.Errorf("document %d (%s): name: must be set", d.Index, d.Kind)
		case k.Scope == "project" && d.Project == "":
			return nil, fmt.Errorf("document %d (%s %q): project: must be set for a project-scoped kind", d.Index, d.Kind, d.Name)
		case k.Scope != "project" && d.Project != "":
			return nil, fmt.Errorf("document %d (%s %q): project: %s is a global kind and takes no project", d.Index, d.Kind, d.Name, d.Kind)
		}
	}
	out := append([]Doc(nil), docs...)
	sort.SliceStable(out, func(i, j int) bool { return kinds[out[i].Kind].Order < kinds[out[j].Kind].Order })
	return out, nil
}

func kindNames(kinds map[string]KindInfo) string {
	var names []string
	for n := range kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return fmt.Sprint(names)
}

// Ref is how a doc is named in output.
func (d Doc) Ref() string {
	if d.Project != "" {
		return d.Kind + "/" + d.Project + "/" + d.Name
	}
	return d.Kind + "/" + d.Name
}
