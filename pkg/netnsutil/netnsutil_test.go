package netnsutil

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/strata-infra/strata/internal/testenv"
	"github.com/vishvananda/netlink"
)

func TestCreateDoListDelete(t *testing.T) {
	testenv.RequireRoot(t, "creates network namespaces")
	prefix := fmt.Sprintf("stt%dnsu-", os.Getpid())
	name := prefix + "a"
	t.Cleanup(func() { _ = Delete(name) })
	for range 2 { // the second Create finds it and succeeds
		if err := Create(name); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := List(prefix); err != nil || len(got) != 1 || got[0] != name {
		t.Fatalf("List(%q) = %v, %v", prefix, got, err)
	}
	var links []netlink.Link
	err := Do(name, func() error {
		var err error
		links, err = netlink.LinkList()
		return err
	})
	if err != nil || len(links) != 1 || links[0].Attrs().Name != "lo" {
		t.Fatalf("inside %q: links %v, err %v; want only lo", name, links, err)
	}
	sentinel := errors.New("boom")
	if err := Do(name, func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do lost the closure's error: %v", err)
	}
	for range 2 { // deleting what is gone is success
		if err := Delete(name); err != nil {
			t.Fatal(err)
		}
	}
	if Exists(name) {
		t.Error("namespace still exists")
	}
	if err := Do(name, func() error { return nil }); err == nil {
		t.Error("Do in a deleted namespace succeeded")
	}
}

func TestValidName(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "a/b"} {
		if err := Create(bad); err == nil {
			t.Errorf("Create(%q) succeeded", bad)
		}
	}
}

func TestDeleteUnwanted(t *testing.T) {
	testenv.RequireRoot(t, "creates network namespaces")
	prefix := "s8e" + testenv.Tag('n') + "-"
	names := []string{prefix + "keep", prefix + "old1", prefix + "old2"}
	for _, n := range names {
		t.Cleanup(func() { _ = Delete(n) })
		if err := Create(n); err != nil {
			t.Fatal(err)
		}
	}
	deleted, errs := DeleteUnwanted(prefix, func(ns string) bool { return ns == prefix+"keep" })
	if len(errs) != 0 || fmt.Sprint(deleted) != fmt.Sprint(names[1:]) {
		t.Fatalf("DeleteUnwanted = %v, %v; want %v deleted", deleted, errs, names[1:])
	}
	if got, err := List(prefix); err != nil || len(got) != 1 || got[0] != prefix+"keep" {
		t.Fatalf("left after DeleteUnwanted: %v, %v", got, err)
	}
	if deleted, errs := DeleteUnwanted(prefix, func(string) bool { return true }); len(deleted)+len(errs) != 0 {
		t.Fatalf("DeleteUnwanted keeping all = %v, %v", deleted, errs)
	}
}
