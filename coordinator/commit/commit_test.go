package commit

import (
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

type widgetSpec struct {
	Size int `json:"size"`
	Seq  int `json:"seq,omitempty"`
}

func newService(t *testing.T) *Service {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "c.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := registry.Default()
	err = reg.Add(&registry.Kind{Name: "widget", Plural: "widgets", Scope: registry.Project,
		NewSpec:  func() any { return &widgetSpec{} },
		Assigned: []string{"seq"},
		Admit: func(a *registry.Admission, r *api.Resource, spec any) error {
			w := spec.(*widgetSpec)
			if w.Size < 0 {
				return api.Fieldf("spec.size", "must not be negative")
			}
			if w.Seq == 0 && a.Prev != nil {
				var old widgetSpec
				_ = json.Unmarshal(a.Prev.Spec, &old)
				w.Seq = old.Seq
			}
			if w.Seq == 0 {
				w.Seq = 7
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	return New(st, reg, nil, nil)
}

func httpCode(err error) int {
	var e *api.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// TestPutAdmitsChecksAndCommits walks one resource through the service:
// admission fills the assigned field, an update keeps and names it,
// If-Match guards both writes and deletes, and refusals move no epoch.
func TestPutAdmitsChecksAndCommits(t *testing.T) {
	s := newService(t)
	if _, err := s.Put(Put{Key: api.Key{Kind: "project", Name: "p"}, Spec: &api.ProjectSpec{}, Who: Who{Admin: true}}); err != nil {
		t.Fatal(err)
	}
	k := api.Key{Kind: "widget", Project: "p", Name: "w"}
	if _, err := s.Put(Put{Key: api.Key{Kind: "widget", Project: "nope", Name: "w"}, Spec: &widgetSpec{}}); httpCode(err) != http.StatusNotFound {
		t.Fatalf("a widget in a missing project: %v, want 404", err)
	}
	res, err := s.Put(Put{Key: k, Spec: &widgetSpec{Size: 1}, MustBeNew: true})
	if err != nil || !res.Created || !res.Changed {
		t.Fatalf("create: %+v %v", res, err)
	}
	created := res.Epoch
	if _, err := s.Put(Put{Key: k, Spec: &widgetSpec{Size: 1}, MustBeNew: true}); err == nil {
		t.Fatal("a second POST of the same name was accepted")
	}
	stale := created - 1
	if _, err := s.Put(Put{Key: k, Spec: &widgetSpec{Size: 2}, IfMatch: &stale}); httpCode(err) != http.StatusPreconditionFailed {
		t.Fatalf("stale If-Match: %v, want 412", err)
	}
	if _, err := s.Put(Put{Key: k, Spec: &widgetSpec{Size: -1}}); err == nil {
		t.Fatal("admission did not refuse a negative size")
	}
	if e := s.Store().Epoch(); e != created {
		t.Fatalf("refused writes moved the epoch from %d to %d", created, e)
	}
	res, err = s.Put(Put{Key: k, Spec: &widgetSpec{Size: 2}, Request: json.RawMessage(`{"size":2}`), IfMatch: &created})
	if err != nil || res.Created || !res.Changed || len(res.Kept) != 1 || res.Kept[0] != "spec.seq" {
		t.Fatalf("update: %+v %v, want changed and spec.seq kept", res, err)
	}
	// An edit that finds nothing to do commits nothing.
	res, err = s.Put(Put{Key: k, Who: Who{System: true}, Edit: func(prev *api.Resource) (any, error) { return nil, nil }})
	if err != nil || res.Changed {
		t.Fatalf("empty edit: %+v %v", res, err)
	}
	res, err = s.Put(Put{Key: k, Who: Who{System: true}, Edit: func(prev *api.Resource) (any, error) {
		var w widgetSpec
		err := json.Unmarshal(prev.Spec, &w)
		w.Size++
		return &w, err
	}})
	if err != nil || !res.Changed {
		t.Fatalf("edit: %+v %v", res, err)
	}
	if _, err := s.Delete(Delete{Key: k, IfMatch: &created}); httpCode(err) != http.StatusPreconditionFailed {
		t.Fatalf("delete with a stale If-Match: %v, want 412", err)
	}
	del, err := s.Delete(Delete{Key: k, IfMatch: &res.Epoch})
	if err != nil || !del.Deleted || del.Epoch != res.Epoch+1 {
		t.Fatalf("delete: %+v %v", del, err)
	}
	if _, err := s.Delete(Delete{Key: k}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("delete of a missing widget: %v, want not found", err)
	}
}
