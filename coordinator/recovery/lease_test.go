package recovery

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strata-infra/strata/coordinator/lease"
	"github.com/strata-infra/strata/coordinator/membership"
	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/internal/etcdtest"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
)

// One etcd member for the package: only the lease test uses it.
func TestMain(m *testing.M) { etcdtest.Main(m, 1) }

// coord is one HA coordinator's recovery controller: its own etcd client,
// store (following the others' commits) and etcd leases.
type coord struct {
	name   string
	cl     *clientv3.Client
	st     *store.Store
	reg    *registry.Registry
	c      *Controller
	cancel context.CancelFunc
	done   chan struct{}
}

func startCoord(t *testing.T, ec *etcdtest.Cluster, prefix, name string, view func() []api.Host) *coord {
	t.Helper()
	cl, err := ec.Client()
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenEtcd(cl, store.EtcdOptions{Prefix: prefix, Timeout: 5 * time.Second}, store.Options{RetainDeltas: 1000})
	if err != nil {
		cl.Close()
		t.Fatal(err)
	}
	reg := registry.Default()
	if err := reg.Attach(st); err != nil {
		t.Fatal(err)
	}
	reg.Scheduler.SetHosts(membership.SchedulerHosts(view()))
	ctx, cancel := context.WithCancel(context.Background())
	k := &coord{name: name, cl: cl, st: st, reg: reg, cancel: cancel, done: make(chan struct{})}
	k.c = New(Config{Grace: time.Second, Interval: 100 * time.Millisecond, Retry: time.Second}, st, reg, view,
		&lease.Etcd{Client: cl, Prefix: prefix + "lease/", ID: name, TTL: 2}, nil)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); st.Follow(ctx) }()
	go func() { defer wg.Done(); k.c.Run(ctx) }()
	go func() { wg.Wait(); close(k.done) }()
	t.Cleanup(k.stop)
	return k
}

// stop ends the coordinator: its goroutines, store and client.
func (k *coord) stop() {
	k.cancel()
	<-k.done
	k.st.Close()
	k.cl.Close()
}

// die is the coordinator dying: its etcd client goes away without
// resigning, so its etcd lease only expires after the TTL.
func (k *coord) die() {
	k.cl.Close() // the session's keepalives stop here
	k.cancel()
	<-k.done
}

func holders(cs ...*coord) []string {
	var out []string
	for _, c := range cs {
		if c.c.Holding() {
			out = append(out, c.name)
		}
	}
	return out
}

// TestRecoveryLeaseOneCoordinatorActs: two coordinators over one etcd run
// recovery controllers; only the holder of the etcd lease acts. The
// holder fences a dead host, then dies before the fence is recorded; its
// etcd lease expires, the other takes it and carries the recovery on from
// the store: it evacuates the instance after the fence, without a second
// fence.
func TestRecoveryLeaseOneCoordinatorActs(t *testing.T) {
	ec := etcdtest.Require(t)
	prefix := fmt.Sprintf("/strata-test/recovery/%d-%d/", os.Getpid(), time.Now().UnixNano())
	// The API's writes and the hosts' reports go through a store of
	// their own, as a third coordinator's would.
	cl, err := ec.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	seed, err := store.OpenEtcd(cl, store.EtcdOptions{Prefix: prefix, Timeout: 5 * time.Second}, store.Options{RetainDeltas: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seed.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	followed := make(chan struct{})
	go func() { defer close(followed); seed.Follow(ctx) }()
	t.Cleanup(func() { cancel(); <-followed })
	k := newClusterOn(t, seed, "h1", "h2", "h3")
	demo(k)
	k.report(api.HostReport{Host: "h1", Physnets: []string{"physnet1"}, Storage: &api.StorageHost{ClientAddrs: []string{"10.251.0.11:0/2212"}}})
	k.report(api.HostReport{Host: "h2", Physnets: []string{}})
	k.report(api.HostReport{Host: "h3", Physnets: []string{"physnet1"}})

	a := startCoord(t, ec, prefix, "coord-a", k.view)
	b := startCoord(t, ec, prefix, "coord-b", k.view)
	limit := testenv.Scale(30 * time.Second)
	testenv.WaitTrue(t, limit, "one coordinator to hold the recovery lease", func() bool { return len(holders(a, b)) == 1 })
	first, second := a, b
	if b.c.Holding() {
		first, second = b, a
	}
	for range 20 {
		if h := holders(a, b); len(h) != 1 || h[0] != first.name {
			t.Fatalf("holders %v, want only %s", h, first.name)
		}
		time.Sleep(50 * time.Millisecond)
	}

	k.clock = time.Now()
	k.setState("h1", api.StateDead)
	for _, c := range []*coord{a, b} {
		c.reg.Scheduler.SetHosts(membership.SchedulerHosts(k.view()))
	}
	testenv.WaitTrue(t, limit, "the holder to fence h1", func() bool { return len(k.fenceList()) == 1 })
	t.Logf("%s holds the recovery lease and fenced h1: fences %v", first.name, k.fenceList())

	died := time.Now()
	first.die()
	testenv.WaitTrue(t, limit, second.name+" to take the recovery lease", second.c.Holding)
	t.Logf("%s died; %s holds the recovery lease %s later (etcd lease TTL 2s)", first.name, second.name, time.Since(died).Round(time.Millisecond))

	k.clock = time.Now()
	k.recordFence("h1-1")
	testenv.WaitTrue(t, limit, "the new holder to evacuate the instance", func() bool {
		vm, _ := get[api.InstanceSpec](k, "instance", "p", "vm")
		return vm.Host != "h1"
	})
	vm, _ := get[api.InstanceSpec](k, "instance", "p", "vm")
	if len(vm.Evacuations) != 1 || vm.Evacuations[0].Fence != "h1-1" || vm.Evacuations[0].To != vm.Host {
		t.Fatalf("evacuations %+v", vm.Evacuations)
	}
	if fs := k.fenceList(); len(fs) != 1 || fs[0] != "h1-1" {
		t.Fatalf("fences %v: the new holder fenced h1 again", fs)
	}
	t.Logf("%s carried the recovery on: vm moved to %s after fence h1-1", second.name, vm.Host)
}
