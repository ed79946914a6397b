package cephconn

import (
	"errors"
	"testing"
)

type pool interface{ Name() int }

type fakeConn struct {
	n      int
	closed *int
}

func (f *fakeConn) Name() int { return f.n }
func (f *fakeConn) Close()    { *f.closed++ }

// noClose has no Close: Drop forgets it all the same.
type noClose struct{ n int }

func (c *noClose) Name() int { return c.n }

func TestLazyReconnectsAfterDrop(t *testing.T) {
	opened, closed := 0, 0
	fail := false
	l := New(func() (pool, error) {
		if fail {
			return nil, errors.New("ceph unreachable")
		}
		opened++
		return &fakeConn{n: opened, closed: &closed}, nil
	})
	a, err := l.Get()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := l.Get(); b != a || opened != 1 {
		t.Fatalf("second Get opened again: %d opens", opened)
	}
	if !l.Drop(a) || closed != 1 {
		t.Fatalf("Drop of the open connection: closed %d times", closed)
	}
	if l.Drop(a) || closed != 1 {
		t.Fatalf("a second Drop of the same connection closed again (%d)", closed)
	}
	fail = true
	if p, err := l.Get(); err == nil || p != nil {
		t.Fatalf("Get while Ceph fails = %v, %v", p, err)
	}
	fail = false
	b, err := l.Get()
	if err != nil || b == a || opened != 2 {
		t.Fatalf("Get after a drop = %v, %v (%d opens): want a new connection", b, err, opened)
	}
	// A failure seen on the old connection leaves the new one alone.
	if l.Drop(a) || closed != 1 {
		t.Fatalf("Drop of a replaced connection closed the open one")
	}
	if c, _ := l.Get(); c != b {
		t.Fatal("the open connection was forgotten")
	}
	l.Close()
	if closed != 2 {
		t.Fatalf("Close closed %d connections, want 2 in all", closed)
	}
	l.Close()
	if closed != 2 {
		t.Fatal("Close with nothing open closed something")
	}
}

func TestLazyDropsAConnectionWithoutClose(t *testing.T) {
	l := New(func() (pool, error) { return &noClose{n: 1}, nil })
	a, _ := l.Get()
	if !l.Drop(a) {
		t.Fatal("Drop of the open connection did nothing")
	}
	if b, _ := l.Get(); b == a {
		t.Fatal("Get after Drop returned the dropped connection")
	}
}
