package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// TestRestartedCoordinatorSendsDeltas: a coordinator restarted on the
// same store answers a host at epoch E with the deltas after E, rebuilt
// from the store's delta log, not with a full plan.
func TestRestartedCoordinatorSendsDeltas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := serve(t, st)
	tok, err := IssueToken(st, api.TokenRequest{Name: "admin", Role: api.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	f.admin = tok.Secret
	planOf := func(f *fixture, since uint64) api.Plan {
		t.Helper()
		var p api.Plan
		b := f.must(f.admin, http.MethodGet, fmt.Sprintf("/v1/hosts/h1/plan?since=%d", since), "", http.StatusOK)
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f.must(f.admin, http.MethodPost, "/v1/projects", `{"name":"a"}`, http.StatusCreated)
	at := planOf(f, 0).Epoch
	f.must(f.admin, http.MethodPost, "/v1/projects", `{"name":"b"}`, http.StatusCreated)
	f.must(f.admin, http.MethodPost, "/v1/projects/a/widgets", `{"name":"w","spec":{"size":2,"host":"h1"}}`, http.StatusCreated)
	f.srv.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g := serve(t, st)
	g.admin = f.admin
	p := planOf(g, at)
	if p.Full || len(p.Deltas) != int(p.Epoch-at) {
		t.Fatalf("restarted coordinator, host at epoch %d: full %v, %d deltas to epoch %d", at, p.Full, len(p.Deltas), p.Epoch)
	}
	var got []string
	for _, d := range p.Deltas {
		for _, c := range d.Changes {
			got = append(got, c.Resource.Kind+"/"+c.Resource.Name)
		}
	}
	if len(got) != 2 || got[0] != "project/b" || got[1] != "widget/w" {
		t.Fatalf("deltas after epoch %d hold %v, want project/b and widget/w", at, got)
	}
}
