package nlink

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"

	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

var nsSeq atomic.Int32

// testNS makes a namespace of its own and a handle in it; both go at
// cleanup.
func testNS(t *testing.T) (string, *netlink.Handle) {
	t.Helper()
	testenv.RequireRoot(t, "makes a network namespace and links in it")
	ns := fmt.Sprintf("s19%dn%d", os.Getpid(), nsSeq.Add(1))
	if err := netnsutil.Create(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := netnsutil.Delete(ns); err != nil {
			t.Errorf("delete namespace %s: %v", ns, err)
		}
	})
	target, err := netns.GetFromPath(netnsutil.Path(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	h, err := netlink.NewHandleAt(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return ns, h
}

// TestLinkCacheDumpsOnlyAfterChanges: one dump serves every caller while
// no link of the namespace changes; a link made through netlink, one made
// by another program, a link set up and a link deleted are each seen by
// the next call; Invalidate and Close make it dump again.
func TestLinkCacheDumpsOnlyAfterChanges(t *testing.T) {
	ns, h := testNS(t)
	c, err := NewLinkCache(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	links := func() map[string]netlink.Link {
		t.Helper()
		m, err := c.Links(h)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	wantDumps := func(n int) {
		t.Helper()
		if got := c.Dumps(); got != n {
			t.Fatalf("%d dumps, want %d", got, n)
		}
	}
	m := links()
	if _, ok := m["lo"]; !ok {
		t.Fatalf("no lo in %v", m)
	}
	delete(m, "lo") // the caller's copy
	for range 3 {
		if _, ok := links()["lo"]; !ok {
			t.Fatal("a caller's change to its map reached the cache")
		}
	}
	wantDumps(1)

	d := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "s19a"}}
	if err := h.LinkAdd(d); err != nil {
		t.Fatal(err)
	}
	if _, ok := links()["s19a"]; !ok {
		t.Fatal("a link made through netlink is not in the next dump")
	}
	wantDumps(2)
	links()
	wantDumps(2)

	out, err := exec.Command("ip", "-n", ns, "link", "add", "s19b", "type", "bridge").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	if _, ok := links()["s19b"]; !ok {
		t.Fatal("a link another program made is not in the next dump")
	}
	wantDumps(3)

	if err := h.LinkSetUp(d); err != nil {
		t.Fatal(err)
	}
	if l := links()["s19a"]; l == nil || l.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("link set up is not up in the next dump: %v", l)
	}
	if err := h.LinkDel(d); err != nil {
		t.Fatal(err)
	}
	if _, ok := links()["s19a"]; ok {
		t.Fatal("a deleted link is still in the next dump")
	}
	n := c.Dumps()
	c.Invalidate()
	links()
	wantDumps(n + 1)
	links()
	wantDumps(n + 1)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	links()
	links()
	wantDumps(n + 3)
}

// TestLinkCacheNil: drivers made without a cache dump every time.
func TestLinkCacheNil(t *testing.T) {
	_, h := testNS(t)
	var c *LinkCache
	m, err := c.Links(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m["lo"]; !ok {
		t.Fatalf("no lo in %v", m)
	}
	c.Invalidate()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}
