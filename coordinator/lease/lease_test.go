package lease

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strata-infra/strata/internal/etcdtest"
)

func TestMain(m *testing.M) { etcdtest.Main(m, 1) }

// TestLocalOneHolderAtATime: a second Acquire waits for the Release of
// the first and gets a larger token.
func TestLocalOneHolderAtATime(t *testing.T) {
	l := NewLocal()
	a, err := l.Acquire(context.Background(), "recovery")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := l.Acquire(ctx, "recovery"); err == nil {
		t.Fatal("a second holder got the lease while the first held it")
	}
	if _, err := l.Acquire(context.Background(), "storage"); err != nil {
		t.Fatalf("another name is free: %v", err)
	}
	got := make(chan Hold)
	go func() {
		b, _ := l.Acquire(context.Background(), "recovery")
		got <- b
	}()
	a.Release(context.Background())
	select {
	case <-a.Lost():
	default:
		t.Fatal("a released hold is not lost")
	}
	b := <-got
	if b.Token() <= a.Token() {
		t.Fatalf("token %d after %d", b.Token(), a.Token())
	}
}

// TestEtcdLeaseMovesWhenHolderDies: two coordinators (two clients)
// campaign; the first holds; when its client goes away without
// resigning (the coordinator died), its etcd lease expires and the second
// takes over with a larger fencing token.
func TestEtcdLeaseMovesWhenHolderDies(t *testing.T) {
	c := etcdtest.Require(t)
	client := func() *clientv3.Client {
		cl, err := c.Client()
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	ca, cb := client(), client()
	defer cb.Close()
	prefix := fmt.Sprintf("/strata-test/lease/%d/", time.Now().UnixNano())
	la := &Etcd{Client: ca, Prefix: prefix, ID: "coord-a", TTL: 2}
	lb := &Etcd{Client: cb, Prefix: prefix, ID: "coord-b", TTL: 2}
	ha, err := la.Acquire(context.Background(), "recovery")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan Hold, 1)
	errc := make(chan error, 1)
	go func() {
		h, err := lb.Acquire(context.Background(), "recovery")
		if err != nil {
			errc <- err
			return
		}
		got <- h
	}()
	select {
	case <-got:
		t.Fatal("the second coordinator got the lease while the first held it")
	case <-time.After(time.Second):
	}
	start := time.Now()
	ca.Close() // the holder dies: no resign, its keep-alives stop
	select {
	case hb := <-got:
		t.Logf("lease moved %.1fs after its holder died (TTL 2 s)", time.Since(start).Seconds())
		if hb.Token() <= ha.Token() {
			t.Fatalf("new holder's token %d is not above the old one's %d", hb.Token(), ha.Token())
		}
		select {
		case <-ha.Lost():
		case <-time.After(10 * time.Second):
			t.Fatal("the dead holder's hold is not lost")
		}
		if err := hb.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("the lease never moved to the second coordinator")
	}
}
