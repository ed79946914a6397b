package ctl

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	coordapi "github.com/strata-infra/strata/coordinator/api"
	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

const manifest = `
kind: project
name: beta
spec:
  description: second
---
# comments and empty documents are fine
---
kind: project
name: alpha
`

func server(t *testing.T) (*apiclient.Client, *store.Store) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "c.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := httptest.NewServer(coordapi.New(coordapi.Options{Store: st, Registry: registry.Default()}))
	t.Cleanup(srv.Close)
	tok, err := coordapi.IssueToken(st, api.TokenRequest{Name: "admin", Role: api.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	return apiclient.New(srv.URL, tok.Secret), st
}

func TestApplyTwiceChangesNothingTheSecondTime(t *testing.T) {
	c, st := server(t)
	docs, err := ParseManifest(strings.NewReader(manifest))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 {
		t.Fatalf("parsed %d docs, want 2", len(docs))
	}
	rs, err := Apply(context.Background(), c, docs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := Summary(rs); got != "2 created" {
		t.Fatalf("first apply: %q", got)
	}
	epoch := st.Epoch()
	rs, err = Apply(context.Background(), c, docs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := Summary(rs); got != "2 unchanged: nothing changed" || st.Epoch() != epoch {
		t.Fatalf("second apply: %q, epoch %d -> %d", got, epoch, st.Epoch())
	}
	docs[0].Spec = []byte(`{"description":"changed"}`)
	rs, _ = Apply(context.Background(), c, docs, nil)
	if got := Summary(rs); got != "1 updated, 1 unchanged" {
		t.Fatalf("after edit: %q", got)
	}
	rs, err = Delete(context.Background(), c, docs, nil)
	if err != nil || Summary(rs) != "2 deleted" {
		t.Fatalf("delete: %q %v", Summary(rs), err)
	}
	rs, err = Delete(context.Background(), c, docs, nil)
	if err != nil || Summary(rs) != "2 absent: nothing changed" {
		t.Fatalf("second delete: %q %v", Summary(rs), err)
	}
}

func TestCheckOrdersByKindAndRejectsBadDocs(t *testing.T) {
	kinds := map[string]KindInfo{
		"project": {Name: "project", Plural: "projects", Scope: "global", Order: 0},
		"network": {Name: "network", Plural: "networks", Scope: "project", Order: 10},
	}
	docs := []Doc{
		{Kind: "network", Project: "p", Name: "n", Index: 1},
		{Kind: "project", Name: "p", Index: 2},
	}
	out, err := Check(docs, kinds)
	if err != nil || out[0].Kind != "project" || out[1].Kind != "network" {
		t.Fatalf("order %+v %v", out, err)
	}
	bad := []struct {
		doc  Doc
		want string
	}{
		{Doc{Name: "x", Index: 1}, "kind: must be set"},
		{Doc{Kind: "volume", Name: "x", Index: 1}, `kind: "volume" is not a kind`},
		{Doc{Kind: "project", Index: 1}, "name: must be set"},
		{Doc{Kind: "network", Name: "n", Index: 1}, "project: must be set"},
		{Doc{Kind: "project", Project: "p", Name: "n", Index: 1}, "project: project is a global kind"},
	}
	for _, b := range bad {
		if _, err := Check([]Doc{b.doc}, kinds); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: err %v, want %q", b.doc, err, b.want)
		}
	}
	if _, err := ParseManifest(strings.NewReader("kind: project\nname: a\ncolour: red\n")); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Errorf("unknown manifest key: %v", err)
	}
}
