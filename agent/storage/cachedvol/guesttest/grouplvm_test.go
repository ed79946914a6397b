package guesttest

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/strata-infra/strata/agent/storage/cachedvol"
	"github.com/strata-infra/strata/agent/storage/dmcache"
)

// lvmBytes is what TestGuestVolumeGroupCache writes through the cache.
const lvmBytes = 8 << 20

// lvm runs the lvm tool without udev, as cachedvol.VolumeGroup does.
func lvm(t *testing.T, args ...string) string {
	t.Helper()
	cfg := "activation { udev_sync = 0 udev_rules = 0 verify_udev_operations = 1 } devices { obtain_device_list_from_udev = 0 }"
	out, err := exec.Command("lvm", append([]string{args[0], "--config", cfg}, args[1:]...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("lvm %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestGuestVolumeGroupCache carves a writeback cache out of an LVM volume
// group (on /dev/vdb, a file on the host) instead of a slice of one device:
// an LV per cache, made on attach beside an LV of the operator's that is
// never touched, holding the dirty data, and removed by the detach once
// flushed. The host reads the raw image back (TestCachedVolumesInGuest).
func TestGuestVolumeGroupCache(t *testing.T) {
	requireGuest(t)
	guestSetup(t)
	ctx := t.Context()
	for _, d := range []string{"/run/lvm", "/run/lock/lvm"} {
		os.MkdirAll(d, 0o700)
	}
	const vg = "strata-test-vg"
	lvm(t, "pvcreate", "--yes", "/dev/vdb")
	lvm(t, "vgcreate", vg, "/dev/vdb")
	t.Cleanup(func() {
		exec.Command("lvm", "vgremove", "--yes", "--config", "activation { udev_sync = 0 udev_rules = 0 }", vg).Run()
	})
	lvm(t, "lvcreate", "--yes", "--zero", "n", "-L", "8m", "-n", "operators", vg)

	m := manager(t.TempDir(), "")
	m.Fast = cachedvol.VolumeGroup{Name: vg}
	v := writeback("lvm", image(t, "lvm"))
	v.CacheBytes = 32 << 20
	dev, err := m.Attach(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	lvName := "strata-" + v.Name + "-cdata"
	if lvs := lvm(t, "lvs", "--noheadings", "-o", "lv_name,lv_size", "--units", "m", vg); !strings.Contains(lvs, lvName) || !strings.Contains(lvs, "operators") {
		t.Fatalf("logical volumes after the attach:\n%s", lvs)
	} else {
		t.Logf("logical volumes after the attach:\n%s", lvs)
	}
	recs, _ := m.Records()
	if len(recs) != 1 || recs[0].Data.Path != "/dev/"+vg+"/"+lvName || recs[0].Data.Sectors < v.CacheBytes/512 {
		t.Fatalf("record of the carved cache: %+v", recs)
	}
	data := Pattern(30, lvmBytes)
	writeAll(t, dev, data)
	st := dirty(t, m, v.Name)
	t.Logf("after writing %d MiB: %+v", lvmBytes>>20, st)
	if st.Mode != dmcache.Writeback || st.DirtyBytes() < lvmBytes/2 {
		t.Fatalf("the LV cache holds %d dirty bytes after a %d byte write", st.DirtyBytes(), lvmBytes)
	}
	if got := readBack(t, dev, lvmBytes); string(got) != string(data) {
		t.Fatal("the volume does not read back through its LV cache")
	}
	if err := m.Detach(ctx, v.Name); err != nil {
		t.Fatal(err)
	}
	checkGone(t, m, v.Name, image(t, "lvm"))
	if lvs := lvm(t, "lvs", "--noheadings", "-o", "lv_name", vg); strings.Contains(lvs, lvName) || !strings.Contains(lvs, "operators") {
		t.Fatalf("logical volumes after the detach (the cache's gone, the operator's kept):\n%s", lvs)
	}
}
