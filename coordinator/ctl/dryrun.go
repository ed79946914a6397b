package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

// DryRun asks the coordinator what an apply of docs would do, without
// changing anything: every document is admitted in dependency order in
// one transaction that is rolled back, with the same checks as the apply
// itself. It writes each resource's outcome to w with, for a change, the
// spec as YAML marked line by line ("-" stored now, "+" after the apply).
func DryRun(ctx context.Context, c *apiclient.Client, docs []Doc, w io.Writer) ([]Result, error) {
	docs, _, err := prepare(ctx, c, docs)
	if err != nil {
		return nil, err
	}
	req := api.DryRunRequest{Resources: make([]api.DryRunResource, len(docs))}
	for i, d := range docs {
		req.Resources[i] = api.DryRunResource{Kind: d.Kind, Project: d.Project, Name: d.Name, Spec: d.Spec}
	}
	var res api.DryRunResult
	if err := c.Do(ctx, http.MethodPost, "/v1/dry-run", req, &res); err != nil {
		// The coordinator names resources by their place in the request,
		// which is apply order: name the document instead.
		var ae *api.Error
		if errors.As(err, &ae) {
			for i, d := range docs {
				prefix := fmt.Sprintf("resources[%d]", i)
				if strings.HasPrefix(ae.Message, prefix+" ") {
					return nil, fmt.Errorf("%s (document %d) would be refused: %w", d.Ref(), d.Index, ae)
				}
			}
		}
		return nil, err
	}
	out := make([]Result, len(res.Results))
	for i, it := range res.Results {
		out[i] = Result{Ref: docs[i].Ref(), Action: it.Action, Kept: it.Kept, DryRun: true}
	}
	if w != nil {
		for i, it := range res.Results {
			fmt.Fprintf(w, "%s: would be %s", docs[i].Ref(), it.Action)
			if len(it.Kept) > 0 {
				fmt.Fprintf(w, " (keeping %s)", strings.Join(it.Kept, ", "))
			}
			fmt.Fprintln(w)
			if it.Action != api.DryRunUnchanged {
				diff := SpecDiff(it.Before, it.After)
				fmt.Fprint(w, diff)
			}
		}
	}
	return out, nil
}

// SpecDiff renders two specs as YAML (keys sorted) and marks each line:
// "  " in both, "- " only before, "+ " only after.
func SpecDiff(before, after json.RawMessage) string {
	lines := func(spec json.RawMessage) []string {
		if len(spec) == 0 {
			return nil
		}
		y, err := yaml.JSONToYAML(spec)
		if err != nil {
			return []string{string(spec)}
		}
		return strings.Split(strings.TrimRight(string(y), "\n"), "\n")
	}
	a, b := lines(before), lines(after)
	// Longest common subsequence of lines; specs are tens of lines.
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			out.WriteString("    " + a[i] + "\n")
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			out.WriteString("  - " + a[i] + "\n")
			i++
		default:
			out.WriteString("  + " + b[j] + "\n")
			j++
		}
	}
	return out.String()
}
