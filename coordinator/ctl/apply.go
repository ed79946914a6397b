package ctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

// Outcome of one document.
const (
	Created   = "created"
	Updated   = "updated"
	Unchanged = "unchanged"
	Deleted   = "deleted"
	Absent    = "absent"
)

// Result is what happened to one document.
type Result struct {
	Ref    string `json:"ref"`
	Action string `json:"action"`
	Epoch  uint64 `json:"epoch"`
	// Kept are the fields the document left out that the update kept from
	// the stored version (values the coordinator assigned); every other
	// omitted field took its default.
	Kept []string `json:"kept,omitempty"`
	// Path is the resource's API path.
	Path string `json:"-"`
	// DryRun marks what an apply would do; nothing was changed.
	DryRun bool `json:"dry_run,omitempty"`
}

// Kinds fetches the coordinator's kinds.
func Kinds(ctx context.Context, c *apiclient.Client) (map[string]KindInfo, error) {
	var ks []KindInfo
	if err := c.Do(ctx, http.MethodGet, "/v1/kinds", nil, &ks); err != nil {
		return nil, fmt.Errorf("list kinds: %w", err)
	}
	out := map[string]KindInfo{}
	for _, k := range ks {
		out[k.Name] = k
	}
	return out, nil
}

// prepare learns the coordinator's kinds and checks and orders docs.
func prepare(ctx context.Context, c *apiclient.Client, docs []Doc) ([]Doc, map[string]KindInfo, error) {
	kinds, err := Kinds(ctx, c)
	if err != nil {
		return nil, nil, err
	}
	docs, err = Check(docs, kinds)
	return docs, kinds, err
}

// Apply creates or updates every doc in dependency order. Each document's
// spec replaces the stored one: fields it leaves out take their defaults,
// except the values the coordinator assigned (a VNI, a MAC, addresses, a
// host), which are kept and named in Result.Kept. It stops at the first
// refusal, reporting what was done before it; a second apply of the same
// file reports every doc unchanged and moves no epoch.
func Apply(ctx context.Context, c *apiclient.Client, docs []Doc, progress io.Writer) ([]Result, error) {
	docs, kinds, err := prepare(ctx, c, docs)
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, d := range docs {
		var pr api.PutResult
		path := apiclient.ResourcePath(kinds[d.Kind].Plural, d.Project, d.Name)
		var before api.Resource
		existed := c.Do(ctx, http.MethodGet, path, nil, &before) == nil
		if err := c.Do(ctx, http.MethodPut, path, api.ResourceRequest{Name: d.Name, Spec: d.Spec}, &pr); err != nil {
			return out, fmt.Errorf("%s (document %d): %w", d.Ref(), d.Index, err)
		}
		r := Result{Ref: d.Ref(), Epoch: pr.Epoch, Action: Unchanged, Kept: pr.Kept, Path: path}
		switch {
		case pr.Changed && existed:
			r.Action = Updated
		case pr.Changed:
			r.Action = Created
		}
		out = append(out, r)
		if progress != nil {
			kept := ""
			if r.Action == Updated && len(r.Kept) > 0 {
				kept = " (kept " + strings.Join(r.Kept, ", ") + ")"
			}
			fmt.Fprintf(progress, "%s %s%s\n", r.Ref, r.Action, kept)
		}
	}
	return out, nil
}

// Delete removes every doc in reverse dependency order; already-absent
// resources are fine.
func Delete(ctx context.Context, c *apiclient.Client, docs []Doc, progress io.Writer) ([]Result, error) {
	docs, kinds, err := prepare(ctx, c, docs)
	if err != nil {
		return nil, err
	}
	var out []Result
	for i := len(docs) - 1; i >= 0; i-- {
		d := docs[i]
		var dr api.DeleteResult
		err := c.Do(ctx, http.MethodDelete, apiclient.ResourcePath(kinds[d.Kind].Plural, d.Project, d.Name), nil, &dr)
		r := Result{Ref: d.Ref(), Action: Deleted, Epoch: dr.Epoch}
		var ae *api.Error
		if errors.As(err, &ae) && ae.Code == http.StatusNotFound {
			r.Action, err = Absent, nil
		}
		if err != nil {
			return out, fmt.Errorf("%s (document %d): %w", d.Ref(), d.Index, err)
		}
		out = append(out, r)
		if progress != nil {
			fmt.Fprintf(progress, "%s %s\n", r.Ref, r.Action)
		}
	}
	return out, nil
}

// Summary counts results by action, e.g. "2 created, 1 unchanged".
func Summary(rs []Result) string {
	order := []string{Created, Updated, Unchanged, Deleted, Absent}
	n := map[string]int{}
	for _, r := range rs {
		n[r.Action]++
	}
	s := ""
	for _, a := range order {
		if n[a] == 0 {
			continue
		}
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("%d %s", n[a], a)
	}
	if len(rs) > 0 && rs[0].DryRun {
		s += " (dry run: nothing was changed)"
	}
	if n[Created]+n[Updated]+n[Deleted] == 0 {
		if s == "" {
			return "nothing in the file"
		}
		return s + ": nothing changed"
	}
	return s
}
