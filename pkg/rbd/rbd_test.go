package rbd_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/strata-infra/strata/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/strata-infra/strata/internal/cephtest"
	"github.com/strata-infra/strata/pkg/rbd"
)

func TestMain(m *testing.M) { cephtest.Main(m, "s13r", "images", "volumes") }

var counter atomic.Int64

// name is a per-run image name: prefix, pid, counter.
func name(kind string) string {
	return fmt.Sprintf("s13-%d-%d-%s", os.Getpid(), counter.Add(1), kind)
}

// connect opens a driver connection as a non-admin cephx user with the
// rbd profile, the way an agent connects.
func connect(t *testing.T) (*rbd.Conn, *cephtest.Cluster) {
	t.Helper()
	cl := cephtest.Require(t)
	if !rbd.Supported() {
		testenv.Missing(t, "Ceph support in this build", rbd.ErrNoCeph.Error())
	}
	ctx := context.Background()
	keyring, err := cl.CreateUser(ctx, "client.strata", "mon", "profile rbd", "osd", "profile rbd", "mgr", "profile rbd")
	if err != nil {
		t.Fatal(err)
	}
	c, err := rbd.Connect(rbd.Config{MonHost: cl.MonHost(), User: "strata", Keyring: keyring})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, cl
}

const mib = 1 << 20

func mustStatus(t *testing.T, c *rbd.Conn, r rbd.Ref) rbd.ImageStatus {
	t.Helper()
	st, err := c.Status(r)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestVolumeLifecycle drives every pool operation against the real cluster:
// create, extend, snapshot, clone, flatten, delete, import and a
// copy-on-write clone of the imported image, and each bad input refused
// with nothing changed.
func TestVolumeLifecycle(t *testing.T) {
	c, _ := connect(t)
	vol := rbd.Ref{Pool: "volumes", Image: name("vol")}
	owner := "volume/" + vol.Image
	t.Cleanup(func() { c.Remove(vol, "", true) })

	// Create, and create again: idempotent for the same owner.
	if err := c.Create(vol, 64*mib, owner); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(vol, 64*mib, owner); err != nil {
		t.Fatalf("second create with the same owner: %v", err)
	}
	if err := c.Create(vol, 64*mib, "volume/other"); !errors.Is(err, rbd.ErrNotOwned) {
		t.Fatalf("create over another owner's image: got %v, want ErrNotOwned", err)
	}
	st := mustStatus(t, c, vol)
	if st.Size != 64*mib || st.Owner != owner || st.Parent != nil || st.Depth != 0 {
		t.Fatalf("status after create: %+v", st)
	}

	// Extend; shrinking is refused and the size stays.
	if err := c.Resize(vol, 128*mib); err != nil {
		t.Fatal(err)
	}
	if err := c.Resize(vol, 32*mib); !errors.Is(err, rbd.ErrShrink) {
		t.Fatalf("shrink: got %v, want ErrShrink", err)
	}
	if st = mustStatus(t, c, vol); st.Size != 128*mib {
		t.Fatalf("size after extend and refused shrink: %d, want %d", st.Size, 128*mib)
	}

	// Snapshot, clone from it; the clone shows its parent and depth.
	snap := rbd.Ref{Pool: vol.Pool, Image: vol.Image, Snap: "s1"}
	if err := c.Snapshot(snap, true); err != nil {
		t.Fatal(err)
	}
	if err := c.Snapshot(snap, true); err != nil {
		t.Fatalf("second snapshot: %v", err)
	}
	clone := rbd.Ref{Pool: "volumes", Image: name("clone")}
	t.Cleanup(func() { c.Remove(clone, "", true) })
	if err := c.Clone(snap, clone, "volume/"+clone.Image); err != nil {
		t.Fatal(err)
	}
	cst := mustStatus(t, c, clone)
	if cst.Parent == nil || *cst.Parent != snap || cst.Depth != 1 || cst.Size != 128*mib {
		t.Fatalf("clone status: %+v parent %v", cst, cst.Parent)
	}
	st = mustStatus(t, c, vol)
	if len(st.Snapshots) != 1 || !st.Snapshots[0].Protected || !slices.Contains(st.Snapshots[0].Children, clone) {
		t.Fatalf("parent's snapshots: %+v", st.Snapshots)
	}

	// The parent and its snapshot refuse deletion while the clone depends on them.
	if err := c.Remove(vol, owner, false); !errors.Is(err, rbd.ErrHasChildren) {
		t.Fatalf("remove a parent: got %v, want ErrHasChildren", err)
	}
	if err := c.RemoveSnapshot(snap); !errors.Is(err, rbd.ErrHasChildren) {
		t.Fatalf("remove a parent snapshot: got %v, want ErrHasChildren", err)
	}
	if got := mustStatus(t, c, vol); len(got.Snapshots) != 1 {
		t.Fatalf("refused removals changed the snapshots: %+v", got.Snapshots)
	}
	// Another owner's remove is refused.
	if err := c.Remove(clone, "volume/other", false); !errors.Is(err, rbd.ErrNotOwned) {
		t.Fatalf("remove by another owner: got %v, want ErrNotOwned", err)
	}

	// Flatten cuts the dependency; then the parent goes.
	if err := c.Flatten(clone); err != nil {
		t.Fatal(err)
	}
	if cst = mustStatus(t, c, clone); cst.Parent != nil || cst.Depth != 0 {
		t.Fatalf("clone after flatten: parent %v depth %d", cst.Parent, cst.Depth)
	}
	if err := c.Remove(vol, owner, false); err != nil {
		t.Fatalf("remove after flatten: %v", err)
	}
	if _, err := c.Status(vol); !errors.Is(err, rbd.ErrNotFound) {
		t.Fatalf("status of a removed image: %v", err)
	}
	if err := c.Remove(vol, owner, false); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if err := c.Resize(rbd.Ref{Pool: "nopool", Image: "x"}, mib); !errors.Is(err, rbd.ErrNotFound) {
		t.Fatalf("unknown pool: got %v, want ErrNotFound", err)
	}
}

// TestRemoveFlattensChildren: removal with flattening keeps the clones,
// now independent.
func TestRemoveFlattensChildren(t *testing.T) {
	c, _ := connect(t)
	parent := rbd.Ref{Pool: "volumes", Image: name("p")}
	child := rbd.Ref{Pool: "volumes", Image: name("c")}
	t.Cleanup(func() { c.Remove(child, "", true); c.Remove(parent, "", true) })
	if err := c.Create(parent, 8*mib, "t"); err != nil {
		t.Fatal(err)
	}
	if err := c.Clone(rbd.Ref{Pool: parent.Pool, Image: parent.Image, Snap: "s"}, child, "t"); err == nil {
		t.Fatal("clone from a missing snapshot succeeded")
	}
	if err := c.Snapshot(rbd.Ref{Pool: parent.Pool, Image: parent.Image, Snap: "s"}, false); err != nil {
		t.Fatal(err)
	}
	if err := c.Clone(rbd.Ref{Pool: parent.Pool, Image: parent.Image, Snap: "s"}, child, "t"); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(parent, "t", true); err != nil {
		t.Fatal(err)
	}
	if st := mustStatus(t, c, child); st.Parent != nil {
		t.Fatalf("child still has parent %v", st.Parent)
	}
	names, err := c.List("volumes")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(names, parent.Image) || !slices.Contains(names, child.Image) {
		t.Fatalf("pool holds %v", names)
	}
}

// TestImportAndCopyOnWriteClone imports a raw and a qcow2 file, checks the
// bytes read back through the rbd CLI, clones the image copy-on-write and
// refuses bad files with nothing made.
func TestImportAndCopyOnWriteClone(t *testing.T) {
	c, cl := connect(t)
	ctx := context.Background()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	data := make([]byte, 9*mib+4096) // not a whole number of objects
	for i := range data {
		if i < 4*mib || i >= 8*mib { // the second 4 MiB object stays zero: skipped, thin
			data[i] = byte(i*7 + i/4096)
		}
	}
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	qcow := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	for _, src := range []struct{ path, format string }{{raw, "raw"}, {qcow, ""}} {
		img := rbd.Ref{Pool: "images", Image: name("img")}
		t.Cleanup(func() { c.Remove(img, "", true) })
		var last uint64
		info, err := c.ImportFile(ctx, src.path, src.format, img, "image/"+img.Image, dir, func(d, _ uint64) { last = max(last, d) })
		if err != nil {
			t.Fatal(err)
		}
		if info.VirtualSize != uint64(len(data)) || last != uint64(len(data)) {
			t.Fatalf("import of %s: %+v, progress ended at %d", src.path, info, last)
		}
		out := filepath.Join(dir, img.Image+".out")
		if _, err := cl.RBD(ctx, "export", img.String()+"@"+rbd.BaseSnap, out); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(out); string(got) != string(data) {
			t.Fatalf("%s read back differs from the source (%d bytes vs %d)", img, len(got), len(data))
		}
		st := mustStatus(t, c, img)
		if st.Used >= st.Size {
			t.Errorf("import of %s is not thin: used %d of %d", src.path, st.Used, st.Size)
		}
		// A copy-on-write clone: no data of its own until written.
		vol := rbd.Ref{Pool: "volumes", Image: name("root")}
		t.Cleanup(func() { c.Remove(vol, "", true) })
		if err := c.Clone(rbd.Ref{Pool: img.Pool, Image: img.Image, Snap: rbd.BaseSnap}, vol, "v"); err != nil {
			t.Fatal(err)
		}
		if vst := mustStatus(t, c, vol); vst.Used != 0 || vst.Parent == nil || vst.Size != uint64(len(data)) {
			t.Fatalf("clone of %s: used %d parent %v size %d", img, vst.Used, vst.Parent, vst.Size)
		}
		if err := c.Remove(img, "", false); !errors.Is(err, rbd.ErrHasChildren) {
			t.Fatalf("delete an image with clones: got %v, want ErrHasChildren", err)
		}
	}

	before, err := c.List("images")
	if err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	for _, bad := range []struct{ path, format string }{
		{filepath.Join(dir, "missing"), ""}, {empty, ""}, {raw, "qcow2"}, {raw, "vmdk"},
	} {
		_, err := c.ImportFile(ctx, bad.path, bad.format, rbd.Ref{Pool: "images", Image: name("bad")}, "x", dir, nil)
		if !errors.Is(err, rbd.ErrBadImage) {
			t.Errorf("import %s as %q: got %v, want ErrBadImage", bad.path, bad.format, err)
		}
	}
	if after, _ := c.List("images"); !slices.Equal(before, after) {
		t.Fatalf("refused imports changed the pool: %v -> %v", before, after)
	}
}

// TestHelperRestartsAfterACrash: the Ceph work runs in strata-rbd, one per
// connection. A helper killed under the connection fails the call that
// finds it dead with an error saying so, the next call runs in a new one
// (connected again), and Close leaves no helper running.
func TestHelperRestartsAfterACrash(t *testing.T) {
	c, _ := connect(t)
	if _, err := c.List("images"); err != nil {
		t.Fatal(err)
	}
	pid := c.HelperPID()
	if pid <= 0 || pid == os.Getpid() {
		t.Fatalf("helper pid %d: want a child process", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, err := c.List("images")
	if err == nil || !strings.Contains(err.Error(), "the next call starts a new one") {
		t.Fatalf("List on a killed helper: %v; want the error naming the dead helper", err)
	}
	t.Logf("the call that found the helper dead: %v", err)
	if _, err := c.List("images"); err != nil {
		t.Fatalf("List after the restart: %v", err)
	}
	if _, err := c.Status(rbd.Ref{Pool: "images", Image: name("absent")}); !errors.Is(err, rbd.ErrNotFound) {
		t.Fatalf("Status of a missing image through the new helper: %v; want ErrNotFound", err)
	}
	again := c.HelperPID()
	if again <= 0 || again == pid {
		t.Fatalf("helper pid %d after the restart (was %d): want a new process", again, pid)
	}
	c.Close()
	if err := syscall.Kill(again, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("helper %d after Close: kill 0 = %v; want it gone", again, err)
	}
	if _, err := c.List("images"); err == nil {
		t.Fatal("List on a closed connection succeeded")
	}
}
