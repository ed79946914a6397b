package attach_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-infra/strata/agent/storage/attach"
	"github.com/strata-infra/strata/pkg/rbd"
)

// TestDetachUnderWay: a live detach completes only when the guest lets
// the disk go, and libvirt drops it from the persistent definition at
// once. A guest that never answers (here: no OS at all, the firmware
// looking for something to boot) keeps the disk live; the next pass must
// see a detach under way, not ask again and fail on a disk the definition
// no longer has (CI saw "device not found: no target device vdb" on the
// second pass of TestInstanceOnRBD when the guest was slow).
func TestDetachUnderWay(t *testing.T) {
	cl, keyring, conn := cephUser(t, "strata-detach")
	ctx := context.Background()
	tag := fmt.Sprintf("s13d-%d", os.Getpid())
	vol := rbd.Ref{Pool: "volumes", Image: tag + "-data"}
	if err := conn.Create(vol, 16<<20, "test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Remove(vol, "", false) })

	dir := t.TempDir()
	d, lv := libvirtdWith(t, dir, cl, "strata-detach", keyring)
	domain := tag + "-noos"
	xml := filepath.Join(dir, "noos.xml")
	if err := os.WriteFile(xml, []byte(fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>`, domain)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"define", xml}, {"start", domain}} {
		if out, err := d.Virsh(args...); err != nil {
			t.Fatalf("virsh %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if err := lv.EnsureSecret(ctx); err != nil {
		t.Fatal(err)
	}

	want := []attach.Volume{{Pool: vol.Pool, Image: vol.Image, Serial: "data"}}
	if err := lv.Set(ctx, domain, want); err != nil {
		t.Fatalf("attach: %v", err)
	}
	live := func() []string {
		got, err := lv.Attached(ctx, domain)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := live(); len(got) != 1 {
		t.Fatalf("attached after Set: %v, want the volume", got)
	}
	for pass := 1; pass <= 3; pass++ {
		if err := lv.Set(ctx, domain, nil); err != nil {
			t.Fatalf("detach, pass %d: %v", pass, err)
		}
	}
	// The point of the test: the firmware never lets the disk go, so the
	// passes above really met a detach under way.
	if got := live(); len(got) != 1 {
		t.Fatalf("live disks after the detach passes: %v; the guest let go, so nothing was under way", got)
	}
	inactive, err := d.Virsh("dumpxml", "--inactive", domain)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(inactive, vol.Image) {
		t.Errorf("the persistent definition still has the volume:\n%s", inactive)
	}
	// Wanted again while the detach is under way: nothing to do yet (the
	// disk is live), and no error.
	if err := lv.Set(ctx, domain, want); err != nil {
		t.Fatalf("wanted again while its detach is under way: %v", err)
	}
}
