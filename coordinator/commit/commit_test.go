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

// TestDryRunStoresNothing: a dry run admits its puts in order in one
// transaction, each seeing the ones before (a widget in the project the
// run creates), says what each would do, and stores nothing; a refusal
// names the put, and nothing moves either.
func TestDryRunStoresNothing(t *testing.T) {
	s := newService(t)
	if _, err := s.Put(Put{Key: api.Key{Kind: "project", Name: "p"}, Spec: &api.ProjectSpec{}, Who: Who{Admin: true}}); err != nil {
		t.Fatal(err)
	}
	w := api.Key{Kind: "widget", Project: "p", Name: "w"}
	if _, err := s.Put(Put{Key: w, Spec: &widgetSpec{Size: 1}}); err != nil {
		t.Fatal(err)
	}
	epoch := s.Store().Epoch()
	q := api.Key{Kind: "widget", Project: "q", Name: "x"}
	rs, err := s.DryRun([]Put{
		{Key: api.Key{Kind: "project", Name: "q"}, Spec: &api.ProjectSpec{}, Who: Who{Admin: true}},
		{Key: q, Spec: &widgetSpec{Size: 3}},
		{Key: w, Spec: &widgetSpec{Size: 1}, Request: json.RawMessage(`{"size":1}`)},
		{Key: w, Spec: &widgetSpec{Size: 2}, Request: json.RawMessage(`{"size":2}`)},
	})
	if err != nil || len(rs) != 4 {
		t.Fatalf("dry run: %+v %v", rs, err)
	}
	if !rs[0].Created || !rs[1].Created || string(rs[1].Resource.Spec) != `{"size":3,"seq":7}` {
		t.Errorf("creates: %+v %+v", rs[0], rs[1])
	}
	if rs[2].Created || rs[2].Changed || !rs[3].Changed || len(rs[3].Kept) != 1 {
		t.Errorf("the same spec again, then a change: %+v %+v", rs[2], rs[3])
	}
	if e := s.Store().Epoch(); e != epoch {
		t.Fatalf("the dry run moved the epoch from %d to %d", epoch, e)
	}
	err = s.Store().View(func(tx *store.Tx) error {
		if _, err := tx.Get(q); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the dry run stored %s: %v", q, err)
		}
		r, err := tx.Get(w)
		if err != nil || string(r.Spec) != `{"size":1,"seq":7}` {
			t.Errorf("the dry run changed %s: %s %v", w, r.Spec, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.DryRun([]Put{{Key: w, Spec: &widgetSpec{Size: 5}}, {Key: w, Spec: &widgetSpec{Size: -1}}})
	var dre *DryRunError
	if !errors.As(err, &dre) || dre.Index != 1 {
		t.Fatalf("a refused second put: %v, want a DryRunError at index 1", err)
	}
	if e := s.Store().Epoch(); e != epoch {
		t.Fatalf("a refused dry run moved the epoch from %d to %d", epoch, e)
	}
}
