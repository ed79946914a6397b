package store

import (
	"context"
	"errors"
	"testing"

	"github.com/strata-infra/strata/coordinator/lease"
	"github.com/strata-infra/strata/pkg/api"
)

// A holder cut off from etcd may not have noticed that its lease expired
// when it commits: the commit itself must fail, and a successor's must go
// in. Here the old holder's election key is deleted (what etcd does when
// the lease behind it expires) while the old holder still holds its Hold.
func TestCommitUnderLostLeaseIsRefused(t *testing.T) {
	cl := etcdClient(t)
	p := freshPrefix(t)
	a, b := openEtcd(t, cl, p, 0), openEtcd(t, cl, p, 0)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	leases := func(id string) *lease.Etcd { return &lease.Etcd{Client: cl, Prefix: p + "lease/", ID: id, TTL: 5} }
	old, err := leases("c1").Acquire(ctx, "recovery")
	if err != nil {
		t.Fatal(err)
	}
	guard := func(h lease.Hold) LeaseGuard { return LeaseGuard{Key: h.Key(), Rev: h.Token()} }
	under := func(s *Store, g LeaseGuard, name string) error {
		_, _, err := s.Update(func(tx *Tx) error {
			tx.Under(g)
			_, _, err := tx.Put(project(name, ""))
			return err
		})
		return err
	}
	if err := under(a, guard(old), "while-held"); err != nil {
		t.Fatalf("commit under a held lease: %v", err)
	}
	// b is behind a by one epoch: a guarded commit still catches up and
	// goes in (the epoch check and the guard fail apart).
	if err := under(b, guard(old), "behind"); err != nil {
		t.Fatalf("commit under a held lease from a store behind: %v", err)
	}

	if _, err := cl.Delete(ctx, old.Key()); err != nil {
		t.Fatal(err)
	}
	successor, err := leases("c2").Acquire(ctx, "recovery")
	if err != nil {
		t.Fatal(err)
	}
	defer successor.Release(ctx)
	if successor.Token() <= old.Token() {
		t.Fatalf("successor's token %d not above the old holder's %d", successor.Token(), old.Token())
	}
	before := a.Epoch()
	err = under(a, guard(old), "cut-off")
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("commit under a lost lease: %v, want ErrLeaseLost", err)
	}
	if a.Epoch() != before {
		t.Fatalf("epoch moved from %d to %d on a refused commit", before, a.Epoch())
	}
	if err := a.View(func(tx *Tx) error {
		if _, err := tx.Get(api.Key{Kind: "project", Name: "cut-off"}); !errors.Is(err, ErrNotFound) {
			t.Errorf("the refused commit's resource: %v, want not found", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := under(b, guard(successor), "successor"); err != nil {
		t.Fatalf("successor's commit: %v", err)
	}
	_ = old.Release(ctx)
}

// bbolt has one coordinator and local leases: a guard with no key
// guards nothing, and commits go in as before.
func TestZeroGuardCommits(t *testing.T) {
	onBoth(t, func(t *testing.T, b backend) {
		s, _ := b.open(t, 0)
		defer s.Close()
		h, err := lease.NewLocal().Acquire(context.Background(), "recovery")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Update(func(tx *Tx) error {
			tx.Under(LeaseGuard{Key: h.Key(), Rev: h.Token()})
			_, _, err := tx.Put(project("p", ""))
			return err
		}); err != nil {
			t.Fatalf("commit under a local lease: %v", err)
		}
	})
}
