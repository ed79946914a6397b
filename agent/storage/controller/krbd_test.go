//go:build pacific

package controller

import (
	"context"

	"github.com/ceph/go-ceph/rados"
	librbd "github.com/ceph/go-ceph/rbd"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/rbd"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// TestKRBDVolumeWaitsForItsHost: while a host holds a krbd volume (the
// exclusive lock its mapping takes; here a client of the test's own
// stands in for the mapping, which this kernel cannot make), its cache may hold
// writes Ceph has not seen. A snapshot of it is then that host's to take
// (package mappedsnap): the controller leaves it, pending, with a status
// that says who takes it; a delete waits. Once the host lets it go
// (it flushed to zero dirty blocks and unmapped), the next pass takes the
// snapshot, and deletes the volume.
func TestKRBDVolumeWaitsForItsHost(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.controller(t, "h1", 5*time.Second)
	vt := res{"volumetype", "", "cached", api.VolumeTypeSpec{Pool: f.pool, AttachMode: "krbd", CacheMode: "writeback"}}
	vol := res{"volume", "p", "k", api.VolumeSpec{SizeGiB: 1, Type: "cached"}}
	snap := res{"volumesnapshot", "p", "s", api.VolumeSnapshotSpec{Volume: "k"}}
	if err := c.Reconcile(ctx, planOf(t, 1, vt, vol)); err != nil {
		t.Fatal(err)
	}
	ref := rbd.Ref{Pool: f.pool, Image: storagespec.VolumeImage("p", "k")}
	// hold takes the image's exclusive lock from a client of its own, as
	// a krbd mapping does; release lets it go cleanly.
	hold := func() (release func()) {
		conn, err := rados.NewConnWithUser(f.cfg.User)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetConfigOption("mon_host", f.cfg.MonHost)
		conn.SetConfigOption("keyring", f.cfg.Keyring)
		if err := conn.Connect(); err != nil {
			t.Fatal(err)
		}
		io, err := conn.OpenIOContext(ref.Pool)
		if err != nil {
			t.Fatal(err)
		}
		img, err := librbd.OpenImage(io, ref.Image, librbd.NoSnapshot)
		if err != nil {
			t.Fatal(err)
		}
		if err := img.LockAcquire(librbd.LockModeExclusive); err != nil {
			t.Fatal(err)
		}
		done := false
		release = func() {
			if done {
				return
			}
			done = true
			img.LockRelease()
			img.Close()
			io.Destroy()
			conn.Shutdown()
		}
		t.Cleanup(release)
		if _, owners, err := f.conn.Holders(ref); err != nil || len(owners) != 1 {
			t.Fatalf("the stand-in mapping holds no lock: %v %v", owners, err)
		}
		return release
	}

	release := hold()
	for epoch := uint64(2); epoch <= 3; epoch++ { // twice: it stays waiting
		c.Reconcile(ctx, planOf(t, epoch, vt, vol, snap))
		rs, ok := statusOf(c, "s")
		if !ok || rs.State != StatePending || !strings.Contains(rs.Message, "taken by the host that maps") || !strings.Contains(rs.Message, ref.String()) {
			t.Fatalf("snapshot of a held krbd volume: %+v", rs)
		}
	}
	if st, err := f.conn.Status(ref); err != nil || len(st.Snapshots) != 0 {
		t.Fatalf("a snapshot was taken while the host held the volume: %v %+v", err, st.Snapshots)
	}
	release()
	if err := c.Reconcile(ctx, planOf(t, 4, vt, vol, snap)); err != nil {
		t.Fatal(err)
	}
	if rs, _ := statusOf(c, "s"); rs.State != StateAvailable {
		t.Fatalf("snapshot once the host let the volume go: %+v", rs)
	}

	release = hold()
	err := c.Reconcile(ctx, planOf(t, 5, vt))
	if err == nil || !strings.Contains(err.Error(), "delete "+ref.String()+" waits") {
		t.Fatalf("delete of a held krbd volume: %v", err)
	}
	if _, err := f.conn.Status(ref); err != nil {
		t.Fatalf("the held volume is gone: %v", err)
	}
	release()
	if err := c.Reconcile(ctx, planOf(t, 6, vt)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.conn.Status(ref); err == nil {
		t.Fatal("the volume is still there once its host let it go")
	}
}
