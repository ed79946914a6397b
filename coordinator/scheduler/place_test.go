package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestReasons builds the example: 40 hosts, 12 drained or dead,
// 20 in another zone, 8 without room.
func TestReasons(t *testing.T) {
	s := New(DefaultConfig())
	for i := range 40 {
		h := Host{Name: fmt.Sprintf("h%02d", i), Alive: true, Zone: "az1", Capacity: Resources{VCPUs: 8, RAMMiB: 8192, DiskGiB: 100}}
		switch {
		case i < 6:
			h.Alive = false
		case i < 12:
			h.Drained = true
		case i < 32:
			h.Zone = "az2"
		default:
			s.Record(fmt.Sprintf("p/big%d", i), h.Name, Resources{VCPUs: 1, RAMMiB: 7000}, "")
		}
		s.SetHost(h)
	}
	_, err := s.Place(Request{Instance: "p/new", Zone: "az1", Resources: Resources{VCPUs: 1, RAMMiB: 2048, DiskGiB: 10}})
	var nh *NoHostError
	if !errors.As(err, &nh) {
		t.Fatalf("Place: %v, want a NoHostError", err)
	}
	if want := "0 of 40 hosts: 12 drained or dead, 20 in another zone, 8 out of RAM"; err.Error() != want {
		t.Fatalf("reason %q, want %q", err, want)
	}
	// The operator drains a host through host config, then undrains it.
	s.SetDrained("h35", true)
	if _, err := s.Place(Request{Instance: "p/new", Zone: "az2", Resources: Resources{VCPUs: 1, RAMMiB: 512}}); err != nil {
		t.Fatalf("az2 has room: %v", err)
	}
	_, err = s.Place(Request{Instance: "p/x", Host: "h35", Resources: Resources{VCPUs: 1, RAMMiB: 512}})
	if want := "host h35 cannot take it: 0 of 1 hosts: 1 drained or dead"; err == nil || err.Error() != want {
		t.Fatalf("named drained host: %v, want %q", err, want)
	}
	_, err = s.Place(Request{Instance: "p/x", Host: "nope"})
	if want := "host nope cannot take it: 0 of 0 hosts: no host in the pool by that name"; err == nil || err.Error() != want {
		t.Fatalf("unknown host: %v, want %q", err, want)
	}
	if _, err := New(DefaultConfig()).Place(Request{Instance: "p/x"}); err == nil || err.Error() != "0 of 0 hosts: no host in the pool" {
		t.Fatalf("empty pool: %v", err)
	}
}

func TestClaimReleaseRecord(t *testing.T) {
	s := New(DefaultConfig())
	s.SetHost(Host{Name: "a", Alive: true, Capacity: Resources{VCPUs: 2, RAMMiB: 1024, DiskGiB: 10}})
	r := Resources{VCPUs: 1, RAMMiB: 1024, DiskGiB: 5}
	c, err := s.Place(Request{Instance: "p/one", Resources: r})
	if err != nil || c.Host != "a" {
		t.Fatalf("Place: %v %v", c, err)
	}
	if _, err := s.Place(Request{Instance: "p/two", Resources: r}); err == nil || !strings.Contains(err.Error(), "1 out of RAM") {
		t.Fatalf("the claim does not hold the RAM: %v", err)
	}
	s.Release("p/one", "a") // its commit failed
	if u := s.Usage()["a"]; u.Used != (Resources{}) {
		t.Fatalf("after release used = %+v", u.Used)
	}
	c, err = s.Place(Request{Instance: "p/two", Resources: r})
	if err != nil {
		t.Fatal(err)
	}
	s.Record("p/two", c.Host, r, "") // its commit succeeded
	s.Release("p/two", "a")          // a late release must not drop a recorded placement
	if u := s.Usage()["a"]; u.Used != r {
		t.Fatalf("after record used = %+v, want %+v", u.Used, r)
	}
	s.Forget("p/two")
	if u := s.Usage()["a"]; u.Used != (Resources{}) {
		t.Fatalf("after forget used = %+v", u.Used)
	}
}

func TestMoveKeepsOldPlacementUntilCommit(t *testing.T) {
	s := New(DefaultConfig())
	for _, n := range []string{"a", "b"} {
		s.SetHost(Host{Name: n, Alive: true, Capacity: Resources{VCPUs: 2, RAMMiB: 2048, DiskGiB: 10}})
	}
	small, big := Resources{VCPUs: 1, RAMMiB: 512}, Resources{VCPUs: 1, RAMMiB: 1536}
	s.Record("p/vm", "a", small, "")
	// Cold migration: anywhere but a.
	c, err := s.Place(Request{Instance: "p/vm", Resources: small, Avoid: "a"})
	if err != nil || c.Host != "b" {
		t.Fatalf("migrate: %+v %v", c, err)
	}
	if u := s.Usage(); u["a"].Used != small || u["b"].Used != small {
		t.Fatalf("while the move is claimed both hosts count it: %+v", u)
	}
	s.Release("p/vm", "b")
	if u := s.Usage(); u["a"].Used != small || u["b"].Used != (Resources{}) {
		t.Fatalf("a failed move keeps the old placement: %+v", u)
	}
	// Resize: the new size is claimed, then recorded in place of the old.
	c, err = s.Place(Request{Instance: "p/vm", Resources: big})
	if err != nil {
		t.Fatal(err)
	}
	s.Record("p/vm", c.Host, big, "")
	u := s.Usage()
	if u["a"].Used.Plus(u["b"].Used) != big {
		t.Fatalf("after resize: %+v, want only the new size counted", u)
	}
	_, err = s.Place(Request{Instance: "p/vm", Resources: big, Avoid: c.Host, Zone: "nowhere"})
	if err == nil || !strings.Contains(err.Error(), "1 the instance's current host, 1 in another zone") {
		t.Fatalf("reason for a migration with nowhere to go: %v", err)
	}
}

func TestGroupPolicies(t *testing.T) {
	s := New(DefaultConfig())
	for i := range 4 {
		s.SetHost(Host{Name: fmt.Sprintf("h%d", i), Alive: true, Capacity: Resources{VCPUs: 8, RAMMiB: 8192, DiskGiB: 100}})
	}
	r := Resources{VCPUs: 1, RAMMiB: 256}
	place := func(group, name string) (string, error) {
		c, err := s.Place(Request{Instance: "p/" + name, Group: group, Resources: r})
		if err == nil {
			s.Record("p/"+name, c.Host, r, group)
		}
		return c.Host, err
	}
	s.SetGroup("p/anti", AntiAffinity)
	seen := map[string]bool{}
	for i := range 4 {
		h, err := place("p/anti", fmt.Sprint("anti", i))
		if err != nil || seen[h] {
			t.Fatalf("anti-affinity member %d: host %s (seen %v), %v", i, h, seen, err)
		}
		seen[h] = true
	}
	if _, err := place("p/anti", "anti4"); err == nil || err.Error() != "0 of 4 hosts: 4 already holding a member of anti-affinity group anti" {
		t.Fatalf("fifth anti-affinity member: %v", err)
	}
	s.SetGroup("p/aff", Affinity)
	first, _ := place("p/aff", "aff0")
	for i := 1; i < 4; i++ {
		if h, err := place("p/aff", fmt.Sprint("aff", i)); err != nil || h != first {
			t.Fatalf("affinity member %d on %s, want %s: %v", i, h, first, err)
		}
	}
	s.SetDrained(first, true)
	if _, err := place("p/aff", "aff9"); err == nil || err.Error() != "0 of 4 hosts: 1 drained or dead, 3 not the host of affinity group aff" {
		t.Fatalf("affinity host drained: %v", err)
	}
	s.SetDrained(first, false)
	s.SetGroup("p/soft", SoftAffinity)
	sfirst, _ := place("p/soft", "soft0")
	if h, _ := place("p/soft", "soft1"); h != sfirst {
		t.Fatalf("soft-affinity member went to %s, want %s", h, sfirst)
	}
	s.SetGroup("p/softanti", SoftAntiAffinity)
	seen = map[string]bool{}
	for i := range 6 { // more members than hosts: soft never refuses
		h, err := place("p/softanti", fmt.Sprint("sa", i))
		if err != nil {
			t.Fatal(err)
		}
		if i < 4 && seen[h] {
			t.Fatalf("soft-anti-affinity member %d doubled up on %s before every host had one", i, h)
		}
		seen[h] = true
	}
}

// TestConcurrentCreatesNeverOvercommit races 200 creates against 20 small
// hosts, half of them in anti-affinity groups of 5: no host goes over
// capacity, no group has two members on a host, and every refusal says why.
func TestConcurrentCreatesNeverOvercommit(t *testing.T) {
	s := New(DefaultConfig())
	capacity := Resources{VCPUs: 4, RAMMiB: 2048, DiskGiB: 20}
	for i := range 20 {
		s.SetHost(Host{Name: fmt.Sprintf("h%02d", i), Alive: true, Capacity: capacity})
	}
	groups := 20 // 100 grouped instances, 5 per group
	for g := range groups {
		s.SetGroup(fmt.Sprintf("p/g%d", g), AntiAffinity)
	}
	// 200 x 512 MiB asks for 100 GiB of RAM against 40 GiB: most refuse.
	r := Resources{VCPUs: 1, RAMMiB: 512, DiskGiB: 2}
	var wg sync.WaitGroup
	var mu sync.Mutex
	placed := map[string]string{}
	var refusals []error
	start := make(chan struct{})
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := Request{Instance: fmt.Sprintf("p/vm%d", i), Resources: r}
			if i%2 == 0 {
				req.Group = fmt.Sprintf("p/g%d", (i/2)%groups)
			}
			<-start
			c, err := s.Place(req)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				refusals = append(refusals, err)
				return
			}
			placed[req.Instance] = c.Host
			if i%3 == 0 { // some commits land while others still race
				s.Record(req.Instance, c.Host, r, req.Group)
			}
		}()
	}
	close(start)
	wg.Wait()
	for _, u := range s.Usage() {
		if u.Used.VCPUs > u.Capacity.VCPUs*16 || u.Used.RAMMiB > u.Capacity.RAMMiB || u.Used.DiskGiB > u.Capacity.DiskGiB {
			t.Errorf("host %s over capacity: used %+v of %+v", u.Host, u.Used, u.Capacity)
		}
	}
	if len(placed) != 80 { // 20 hosts x 4 x 512 MiB
		t.Errorf("placed %d, want exactly 80 (every host full)", len(placed))
	}
	for g := range groups {
		onHost := map[string]string{}
		for in, h := range s.GroupHosts(fmt.Sprintf("p/g%d", g)) {
			if other, dup := onHost[h]; dup {
				t.Errorf("group g%d: %s and %s both on %s", g, in, other, h)
			}
			onHost[h] = in
		}
	}
	for _, err := range refusals {
		var nh *NoHostError
		if !errors.As(err, &nh) || !strings.HasPrefix(err.Error(), "0 of 20 hosts: ") {
			t.Errorf("refusal without a reason: %v", err)
		}
	}
	if len(refusals)+len(placed) != 200 {
		t.Errorf("%d refusals + %d placed != 200", len(refusals), len(placed))
	}
	t.Logf("placed %d, refused %d (e.g. %v), %d claims retried after losing a race", len(placed), len(refusals), refusals[0], s.Conflicts())
}

// TestSetHostsFollowsGossip: a host gone from the gossip view is no longer
// alive (its load stays counted); one back with a new zone is re-indexed.
func TestSetHostsFollowsGossip(t *testing.T) {
	s := New(DefaultConfig())
	c := Resources{VCPUs: 2, RAMMiB: 1024, DiskGiB: 10}
	s.SetHosts([]Host{{Name: "a", Alive: true, Zone: "az1", Capacity: c}, {Name: "b", Alive: true, Zone: "az1", Capacity: c}})
	s.Record("p/x", "b", Resources{VCPUs: 1, RAMMiB: 512}, "")
	s.SetHosts([]Host{{Name: "a", Alive: true, Zone: "az1", Capacity: c}})
	_, err := s.Place(Request{Instance: "p/y", Zone: "az1", Resources: Resources{VCPUs: 1, RAMMiB: 1024}, Avoid: "a"})
	if want := "0 of 2 hosts: 1 the instance's current host, 1 drained or dead"; err == nil || err.Error() != want {
		t.Fatalf("b left gossip: %v, want %q", err, want)
	}
	s.SetHosts([]Host{{Name: "a", Alive: true, Zone: "az1", Capacity: c}, {Name: "b", Alive: true, Zone: "az2", Capacity: c}})
	cl, err := s.Place(Request{Instance: "p/y", Zone: "az2", Resources: Resources{VCPUs: 1, RAMMiB: 512}})
	if err != nil || cl.Host != "b" {
		t.Fatalf("b back in az2: %+v %v", cl, err)
	}
	if u := s.Usage()["b"]; u.Used.RAMMiB != 1024 {
		t.Fatalf("b's load after it returned: %+v", u.Used)
	}
}

// TestAggregatesFromAgentConfig: a host whose agent config names an
// aggregate is its member as if the aggregate listed it, before and
// after the aggregate is made, and leaves it when its config drops it.
func TestAggregatesFromAgentConfig(t *testing.T) {
	s := New(DefaultConfig())
	c := Resources{VCPUs: 4, RAMMiB: 4096, DiskGiB: 40}
	s.SetHosts([]Host{{Name: "a", Alive: true, Capacity: c}, {Name: "b", Alive: true, Capacity: c, Aggregates: []string{"fast"}}})
	ssd := Request{Instance: "p/x", Resources: Resources{VCPUs: 1, RAMMiB: 64}, ExtraSpecs: map[string]string{"disk": "ssd"}}
	if _, err := s.Place(ssd); err == nil || err.Error() != "0 of 2 hosts: 2 not in an aggregate matching the flavor" {
		t.Fatalf("before the aggregate exists: %v", err)
	}
	s.SetAggregate(Aggregate{Name: "fast", Metadata: map[string]string{"disk": "ssd"}})
	for i := range 3 {
		ssd.Instance = fmt.Sprintf("p/x%d", i)
		cl, err := s.Place(ssd)
		if err != nil || cl.Host != "b" {
			t.Fatalf("placement %d: %+v %v, want host b (declared in fast)", i, cl, err)
		}
	}
	// The API lists a; b stays a member by its config.
	s.SetAggregate(Aggregate{Name: "fast", Hosts: []string{"a"}, Metadata: map[string]string{"disk": "ssd"}})
	got := map[string]bool{}
	for i := range 20 {
		ssd.Instance = fmt.Sprintf("p/y%d", i)
		cl, err := s.Place(ssd)
		if err != nil {
			t.Fatal(err)
		}
		got[cl.Host] = true
	}
	if !got["a"] || !got["b"] {
		t.Fatalf("listed and declared members: placed on %v, want both", got)
	}
	// b's agent drops the aggregate from its config; the API drops a.
	s.SetHosts([]Host{{Name: "a", Alive: true, Capacity: c}, {Name: "b", Alive: true, Capacity: c}})
	s.SetAggregate(Aggregate{Name: "fast", Metadata: map[string]string{"disk": "ssd"}})
	ssd.Instance = "p/z"
	if _, err := s.Place(ssd); err == nil || err.Error() != "0 of 2 hosts: 2 not in an aggregate matching the flavor" {
		t.Fatalf("after b's config dropped it: %v", err)
	}
}
