package store

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"

	bolt "go.etcd.io/bbolt"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

func open(t *testing.T, path string, retain int) *Store {
	t.Helper()
	s, err := Open(path, Options{RetainDeltas: retain})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func project(name, desc string) api.Resource {
	spec, _ := json.Marshal(api.ProjectSpec{Description: desc})
	return api.Resource{Kind: "project", Name: name, Spec: spec}
}

func put(t *testing.T, s *Store, r api.Resource) (uint64, bool) {
	t.Helper()
	e, changed, err := s.Update(func(tx *Tx) error { _, _, err := tx.Put(r); return err })
	if err != nil {
		t.Fatal(err)
	}
	return e, changed
}

func TestEpochBumpsOncePerChangingCommit(t *testing.T) {
	onBoth(t, testEpochBumpsOncePerChangingCommit)
}

func testEpochBumpsOncePerChangingCommit(t *testing.T, b backend) {
	s, _ := b.open(t, 0)
	defer s.Close()
	if e, ch := put(t, s, project("a", "x")); e != 1 || !ch {
		t.Fatalf("first put: epoch %d changed %v, want 1 true", e, ch)
	}
	if e, ch := put(t, s, project("a", "x")); e != 1 || ch {
		t.Fatalf("same spec again: epoch %d changed %v, want 1 false", e, ch)
	}
	// Two writes in one commit are one epoch and one delta.
	e, _, err := s.Update(func(tx *Tx) error {
		if _, _, err := tx.Put(project("b", "")); err != nil {
			return err
		}
		_, _, err := tx.Put(project("c", ""))
		return err
	})
	if err != nil || e != 2 {
		t.Fatalf("two-put commit: epoch %d err %v, want 2", e, err)
	}
	p, err := s.Plan("h1", 1, func(api.Resource) bool { return true })
	if err != nil || len(p.Deltas) != 1 || len(p.Deltas[0].Changes) != 2 {
		t.Fatalf("plan since 1: %+v %v", p, err)
	}
	// A failing commit changes nothing.
	boom := errors.New("boom")
	if _, _, err := s.Update(func(tx *Tx) error { tx.Put(project("d", "")); return boom }); !errors.Is(err, boom) {
		t.Fatalf("want boom, got %v", err)
	}
	if s.Epoch() != 2 {
		t.Fatalf("epoch after failed commit = %d, want 2", s.Epoch())
	}
	_ = s.View(func(tx *Tx) error {
		if _, err := tx.Get(api.Key{Kind: "project", Name: "d"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("rolled-back resource is visible: %v", err)
		}
		return nil
	})
}

func TestReopenKeepsStateAndEpoch(t *testing.T) { onBoth(t, testReopenKeepsStateAndEpoch) }

func testReopenKeepsStateAndEpoch(t *testing.T, b backend) {
	s, reopen := b.open(t, 0)
	put(t, s, project("a", "one"))
	put(t, s, project("a", "two"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = reopen()
	defer s.Close()
	if s.Epoch() != 2 {
		t.Fatalf("epoch after reopen = %d, want 2", s.Epoch())
	}
	_ = s.View(func(tx *Tx) error {
		r, err := tx.Get(api.Key{Kind: "project", Name: "a"})
		if err != nil || string(r.Spec) != `{"description":"two"}` || r.Epoch != 2 {
			t.Fatalf("after reopen: %+v %v", r, err)
		}
		return nil
	})
}

func TestPlanFallsBackToFullWhenDeltasTrimmed(t *testing.T) {
	onBoth(t, testPlanFallsBackToFullWhenDeltasTrimmed)
}

func testPlanFallsBackToFullWhenDeltasTrimmed(t *testing.T, b backend) {
	s, _ := b.open(t, 3)
	defer s.Close()
	for i := 0; i < 6; i++ {
		put(t, s, project("p"+string(rune('a'+i)), ""))
	}
	all := func(api.Resource) bool { return true }
	cases := []struct {
		since      uint64
		full       bool
		deltas     int
		resources  int
		wantOldest uint64
	}{
		{since: 0, full: true, resources: 6},
		{since: 1, full: true, resources: 6}, // delta 2 is trimmed
		{since: 3, full: false, deltas: 3},   // deltas 4..6 retained
		{since: 5, full: false, deltas: 1},
		{since: 6, full: false, deltas: 0},
		{since: 9, full: true, resources: 6}, // agent ahead: full, it fences
	}
	for _, c := range cases {
		p, err := s.Plan("h", c.since, all)
		if err != nil {
			t.Fatal(err)
		}
		if p.Epoch != 6 || p.Full != c.full || len(p.Deltas) != c.deltas || len(p.Resources) != c.resources {
			t.Errorf("since %d: epoch %d full %v deltas %d resources %d; want full %v deltas %d resources %d",
				c.since, p.Epoch, p.Full, len(p.Deltas), len(p.Resources), c.full, c.deltas, c.resources)
		}
	}
	if o := s.OldestDelta(); o != 4 {
		t.Fatalf("oldest retained delta = %d, want 4", o)
	}
}

func TestPlanFilterTurnsMoveIntoDelete(t *testing.T) { onBoth(t, testPlanFilterTurnsMoveIntoDelete) }

func testPlanFilterTurnsMoveIntoDelete(t *testing.T, b backend) {
	s, _ := b.open(t, 0)
	defer s.Close()
	onHost := func(host string) Filter {
		return func(r api.Resource) bool {
			var spec struct{ Host string }
			_ = json.Unmarshal(r.Spec, &spec)
			return spec.Host == host
		}
	}
	r := api.Resource{Kind: "thing", Project: "p", Name: "x", Spec: json.RawMessage(`{"Host":"h1"}`)}
	put(t, s, r)
	r.Spec = json.RawMessage(`{"Host":"h2"}`)
	put(t, s, r)
	p1, _ := s.Plan("h1", 1, onHost("h1"))
	p2, _ := s.Plan("h2", 1, onHost("h2"))
	p3, _ := s.Plan("h3", 1, onHost("h3"))
	if len(p1.Deltas) != 1 || len(p1.Deltas[0].Changes) != 1 || p1.Deltas[0].Changes[0].Op != api.OpDelete {
		t.Fatalf("h1 should see a delete: %+v", p1)
	}
	if len(p2.Deltas[0].Changes) != 1 || p2.Deltas[0].Changes[0].Op != api.OpPut {
		t.Fatalf("h2 should see a put: %+v", p2)
	}
	if len(p3.Deltas) != 1 || len(p3.Deltas[0].Changes) != 0 {
		t.Fatalf("h3 should see an empty delta (epoch moved, nothing for it): %+v", p3)
	}
}

func TestTokensAreStoredHashed(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "s.db"), 0)
	defer s.Close()
	secret := "strata_admin_secretvalue"
	if err := s.PutToken(api.Token{ID: "t1", Role: api.RoleAdmin}, secret); err != nil {
		t.Fatal(err)
	}
	if tok, err := s.LookupToken(secret); err != nil || tok.ID != "t1" {
		t.Fatalf("lookup: %+v %v", tok, err)
	}
	if _, err := s.LookupToken("wrong"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("wrong secret: %v", err)
	}
	raw := ""
	_ = s.backend.(*boltBackend).db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error { raw += string(k) + string(v); return nil })
	})
	if strings.Contains(raw, secret) {
		t.Fatal("token secret is stored in clear")
	}
}
