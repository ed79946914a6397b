package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strata-infra/strata/internal/etcdtest"
	"github.com/strata-infra/strata/pkg/api"
)

// One etcd member for the package: the store tests run on both backends.
func TestMain(m *testing.M) { etcdtest.Main(m, 1) }

var prefixSeq atomic.Int64

// etcdClient returns a client of the package's etcd, closed after t.
func etcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	c := etcdtest.Require(t)
	cl, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// freshPrefix is a key prefix no other test uses.
func freshPrefix(t *testing.T) string {
	return fmt.Sprintf("/strata-test/%s/%d/", t.Name(), prefixSeq.Add(1))
}

func openEtcd(t *testing.T, cl *clientv3.Client, prefix string, retain int) *Store {
	t.Helper()
	s, err := OpenEtcd(cl, EtcdOptions{Prefix: prefix}, Options{RetainDeltas: retain})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// backend is a way to open a store, and to open it again on the same
// state (a coordinator restart).
type backend struct {
	name string
	open func(t *testing.T, retain int) (s *Store, reopen func() *Store)
}

func backends() []backend {
	return []backend{
		{"bbolt", func(t *testing.T, retain int) (*Store, func() *Store) {
			path := filepath.Join(t.TempDir(), "s.db")
			return open(t, path, retain), func() *Store { return open(t, path, retain) }
		}},
		{"etcd", func(t *testing.T, retain int) (*Store, func() *Store) {
			cl := etcdClient(t)
			p := freshPrefix(t)
			return openEtcd(t, cl, p, retain), func() *Store { return openEtcd(t, cl, p, retain) }
		}},
	}
}

// onBoth runs fn as a subtest per backend.
func onBoth(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) { fn(t, b) })
	}
}

// observed is everything a sequence of commits leaves that hosts and
// clients can see.
type observed struct {
	Epochs   []uint64
	Changed  []bool
	Plans    []api.Plan // h1's plan since each epoch, and in full
	Statuses []api.ResourceStatus
	Failing  []api.ResourceReport
	Oldest   uint64
	Seen     []string // what observers were told, in order
}

// script is one sequence of commits covering what a commit can do: puts,
// a no-op, several writes in one commit, a failing commit, a move
// between hosts, a delete, an epoch jump, and observed state.
func script(t *testing.T, s *Store) observed {
	t.Helper()
	var o observed
	s.Observe(func(epoch uint64, chs []api.Change) {
		for _, ch := range chs {
			o.Seen = append(o.Seen, fmt.Sprintf("%d %s %s", epoch, ch.Op, ch.Resource.Key()))
		}
	})
	thing := func(name, host string) api.Resource {
		return api.Resource{Kind: "thing", Project: "p", Name: name, Spec: json.RawMessage(fmt.Sprintf(`{"Host":%q}`, host))}
	}
	steps := []func(tx *Tx) error{
		func(tx *Tx) error { _, _, err := tx.Put(project("p", "")); return err },
		func(tx *Tx) error { _, _, err := tx.Put(project("p", "")); return err }, // same spec: nothing
		func(tx *Tx) error {
			for _, n := range []string{"a", "b", "c"} {
				if _, _, err := tx.Put(thing(n, "h1")); err != nil {
					return err
				}
			}
			return nil
		},
		func(tx *Tx) error { tx.Put(thing("d", "h1")); return errors.New("refused") },
		func(tx *Tx) error { _, _, err := tx.Put(thing("b", "h2")); return err }, // moves off h1
		func(tx *Tx) error { _, err := tx.Delete(api.Key{Kind: "thing", Project: "p", Name: "a"}); return err },
		func(tx *Tx) error {
			tx.Put(thing("e", "h1"))
			_, err := tx.Delete(api.Key{Kind: "thing", Project: "p", Name: "e"}) // made and gone in one
			return err
		},
		func(tx *Tx) error {
			_, err := tx.Delete(api.Key{Kind: "thing", Project: "p", Name: "c"})
			if err == nil {
				_, _, err = tx.Put(thing("c", "h1")) // gone and made again in one
			}
			return err
		},
	}
	for i, step := range steps {
		e, changed, err := s.Update(step)
		if err != nil && i != 3 {
			t.Fatalf("step %d: %v", i, err)
		}
		o.Epochs, o.Changed = append(o.Epochs, e), append(o.Changed, changed)
	}
	if _, err := s.PutReport(api.HostReport{Host: "h1", AppliedEpoch: s.Epoch(), Resources: []api.ResourceReport{
		{Key: api.Key{Kind: "thing", Project: "p", Name: "c"}, ResourceStatus: api.ResourceStatus{State: api.ResourceError, Message: "no"}},
	}}, func(api.Resource) bool { return true }); err != nil {
		t.Fatal(err)
	}
	jumped, err := s.JumpEpoch(s.Epoch() + 10)
	if err != nil {
		t.Fatal(err)
	}
	o.Epochs = append(o.Epochs, jumped)
	put(t, s, thing("f", "h1"))
	onH1 := func(r api.Resource) bool {
		var spec struct{ Host string }
		_ = json.Unmarshal(r.Spec, &spec)
		return r.Kind != "thing" || spec.Host == "h1"
	}
	for since := uint64(0); since <= s.Epoch(); since++ {
		p, err := s.Plan("h1", since, onH1)
		if err != nil {
			t.Fatal(err)
		}
		p.History = ""
		for i := range p.Resources {
			p.Resources[i].Created, p.Resources[i].Updated = time.Time{}, time.Time{}
		}
		for _, d := range p.Deltas {
			for i := range d.Changes {
				d.Changes[i].Resource.Created, d.Changes[i].Resource.Updated = time.Time{}, time.Time{}
			}
		}
		o.Plans = append(o.Plans, p)
	}
	_ = s.View(func(tx *Tx) error {
		o.Statuses = tx.HostStatuses(api.Key{Kind: "thing", Project: "p", Name: "c"})
		o.Failing = tx.Failing("h1")
		return nil
	})
	for i := range o.Statuses {
		o.Statuses[i].Updated = time.Time{}
	}
	for i := range o.Failing {
		o.Failing[i].Updated = time.Time{}
	}
	o.Oldest = s.OldestDelta()
	return o
}

// TestStoreBackendsAgree runs the same sequence of commits against bbolt
// and etcd: the same epochs, deltas, plans, statuses and observer calls,
// and again after a reopen.
func TestStoreBackendsAgree(t *testing.T) {
	var got []observed
	for _, b := range backends() {
		s, reopen := b.open(t, 6)
		o := script(t, s)
		s.Close()
		s = reopen()
		if s.Epoch() != o.Epochs[len(o.Epochs)-1]+1 || s.OldestDelta() != o.Oldest {
			t.Fatalf("%s after reopen: epoch %d oldest delta %d, want %d and %d", b.name, s.Epoch(), s.OldestDelta(), o.Epochs[len(o.Epochs)-1]+1, o.Oldest)
		}
		s.Close()
		got = append(got, o)
	}
	want := []uint64{1, 1, 2, 0, 3, 4, 5, 6, 16}
	if !reflect.DeepEqual(got[0].Epochs, want) {
		t.Fatalf("bbolt epochs %v, want %v", got[0].Epochs, want)
	}
	if len(got[0].Statuses) != 1 || len(got[0].Failing) != 1 || len(got[0].Seen) == 0 {
		t.Fatalf("bbolt observed too little: %+v", got[0])
	}
	a, b := got[0], got[1]
	if !reflect.DeepEqual(a.Epochs, b.Epochs) || !reflect.DeepEqual(a.Changed, b.Changed) {
		t.Errorf("epochs differ: bbolt %v %v, etcd %v %v", a.Epochs, a.Changed, b.Epochs, b.Changed)
	}
	for i := range a.Plans {
		if !reflect.DeepEqual(a.Plans[i], b.Plans[i]) {
			ja, _ := json.Marshal(a.Plans[i])
			jb, _ := json.Marshal(b.Plans[i])
			t.Errorf("plan since %d differs:\nbbolt %s\netcd  %s", i, ja, jb)
		}
	}
	if !reflect.DeepEqual(a.Statuses, b.Statuses) || !reflect.DeepEqual(a.Failing, b.Failing) {
		t.Errorf("observed state differs: bbolt %+v %+v, etcd %+v %+v", a.Statuses, a.Failing, b.Statuses, b.Failing)
	}
	if !reflect.DeepEqual(a.Seen, b.Seen) || a.Oldest != b.Oldest {
		t.Errorf("observers or retention differ: bbolt %v (oldest %d), etcd %v (oldest %d)", a.Seen, a.Oldest, b.Seen, b.Oldest)
	}
}

// TestEtcdCoordinatorsShareOneEpochLine runs two stores (two
// coordinators) over one etcd prefix, committing at once: every commit
// gets its own epoch, none is lost, and each store follows the other's
// commits (plans and observers) without writing.
func TestEtcdCoordinatorsShareOneEpochLine(t *testing.T) {
	cl := etcdClient(t)
	p := freshPrefix(t)
	a, b := openEtcd(t, cl, p, 0), openEtcd(t, cl, p, 0)
	defer a.Close()
	defer b.Close()
	var seenByB atomic.Int64
	b.Observe(func(_ uint64, chs []api.Change) { seenByB.Add(int64(len(chs))) })
	ctx, cancel := contextWithCancel()
	defer cancel()
	go b.Follow(ctx)
	const each = 40
	epochs := make(chan uint64, 2*each)
	var wg sync.WaitGroup
	for i, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				e, changed, err := s.Update(func(tx *Tx) error {
					_, _, err := tx.Put(project(fmt.Sprintf("s%d-%d", i, j), ""))
					return err
				})
				if err != nil || !changed {
					t.Errorf("store %d commit %d: %v (changed %v)", i, j, err, changed)
					return
				}
				epochs <- e
			}
		}()
	}
	wg.Wait()
	close(epochs)
	seen := map[uint64]bool{}
	for e := range epochs {
		if seen[e] {
			t.Fatalf("epoch %d given to two commits", e)
		}
		seen[e] = true
	}
	if len(seen) != 2*each {
		t.Fatalf("%d epochs for %d commits", len(seen), 2*each)
	}
	waitEpoch := func(s *Store, want uint64) {
		deadline := time.Now().Add(30 * time.Second)
		for s.Epoch() < want && time.Now().Before(deadline) {
			select {
			case <-s.Changed():
			case <-time.After(100 * time.Millisecond):
			}
		}
		if s.Epoch() != want {
			t.Fatalf("store at epoch %d, want %d", s.Epoch(), want)
		}
	}
	waitEpoch(b, 2*each)
	// a follows nobody: its next commit catches up first.
	put(t, a, project("last", ""))
	waitEpoch(b, 2*each+1)
	all := func(api.Resource) bool { return true }
	pa, _ := a.Plan("h", 0, all)
	pb, _ := b.Plan("h", 0, all)
	if len(pa.Resources) != 2*each+1 || len(pb.Resources) != 2*each+1 {
		t.Fatalf("full plans hold %d and %d resources, want %d", len(pa.Resources), len(pb.Resources), 2*each+1)
	}
	if d, _ := b.Plan("h", 2*each, all); len(d.Deltas) != 1 || len(d.Deltas[0].Changes) != 1 {
		t.Fatalf("b's delta plan after %d: %+v", 2*each, d)
	}
	if n := seenByB.Load(); n != 2*each+1 {
		t.Fatalf("b's observers saw %d changes, want %d", n, 2*each+1)
	}
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
