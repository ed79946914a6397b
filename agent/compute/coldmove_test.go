package compute_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/compute"
	"github.com/strata-infra/strata/pkg/computespec"
)

// TestColdMigrationCopiesTheDisk: a stopped instance with a local disk
// moves between two drivers (two hosts' agents; here on one libvirtd,
// with domain prefixes of their own): the source keeps its domain and
// exports the instance directory as a libvirt pool, the destination
// copies the disk through libvirt (the same connection a live migration
// uses) and defines the domain on it. The copy is the source's disk —
// a mark written at its end arrives, the copy stays sparse — and the
// guest boots from it on the destination. When the move is over, the
// source deletes its copy and its pool.
func TestColdMigrationCopiesTheDisk(t *testing.T) {
	e := requireEnv(t)
	peers := func(string) (string, string) { return "qemu+unix:///system?socket=" + e.daemon.Socket, "" }
	withMigrator := func(c *compute.Config) {
		c.Migrator = compute.NewLibvirtMigrator(c.Hypervisor.(*compute.Libvirt), peers)
	}
	src := newDriverWith(t, time.Second, withMigrator)
	dst := newDriverWith(t, time.Second, withMigrator)
	in := instance("cold")
	in.Spec.Power = computespec.PowerStopped
	set(t, src, in)
	disk := func(d *testDriver) string { return filepath.Join(d.Config().StateDir, "instances", "cold", "disk") }
	mark := []byte("strata cold migration mark")
	f, err := os.OpenFile(disk(src), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(mark, 1<<30-4096); err != nil {
		t.Fatal(err)
	}
	f.Close()

	out := in
	out.Migration = &compute.Migration{Peer: "dst", Out: true}
	set(t, src, out)
	if pools, _ := e.daemon.Virsh("pool-list", "--name"); !strings.Contains(pools, "strata-out-cold") {
		t.Fatalf("the source exports no pool:\n%s", pools)
	}
	arriving := in
	arriving.Migration = &compute.Migration{Peer: "src"}
	start := time.Now()
	set(t, dst, arriving)
	copied := time.Since(start)
	st, err := os.Stat(disk(dst))
	if err != nil {
		t.Fatalf("no disk on the destination: %v", err)
	}
	got := make([]byte, len(mark))
	g, err := os.Open(disk(dst))
	if err != nil {
		t.Fatal(err)
	}
	g.ReadAt(got, 1<<30-4096)
	g.Close()
	if !bytes.Equal(got, mark) || st.Size() != 1<<30 {
		t.Fatalf("the destination's disk (%d bytes) lacks the source's mark: %q", st.Size(), got)
	}
	if used := st.Sys().(*syscall.Stat_t).Blocks * 512; used > 256<<20 {
		t.Fatalf("the copy is not sparse: %d MiB allocated of 1024", used>>20)
	}
	t.Logf("1 GiB sparse disk copied through libvirt in %v", copied.Round(time.Millisecond))
	if d := dst.status("cold"); d.Power != computespec.PowerStopped || d.Error != "" {
		t.Fatalf("destination after the copy: %+v", d)
	}
	arriving.Spec.Power = computespec.PowerRunning
	set(t, dst, arriving)
	waitFor(t, 180*time.Second, "the guest to boot from the copied disk on the destination", func() bool {
		return strings.Contains(dst.status("cold").ConsoleLog, "strata-guest: root /dev/vda strata test image")
	})
	set(t, src) // the move is over: the source forgets it
	if pools, _ := e.daemon.Virsh("pool-list", "--all", "--name"); strings.Contains(pools, "strata-out-cold") {
		t.Fatalf("the source's pool outlived the move:\n%s", pools)
	}
	if _, err := os.Stat(disk(src)); !os.IsNotExist(err) {
		t.Fatalf("the source kept the disk: %v", err)
	}
}
