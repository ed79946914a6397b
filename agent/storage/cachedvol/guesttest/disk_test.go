package guesttest

import (
	"net/netip"
	"os"
	"testing"

	"github.com/strata-infra/strata/agent/storage/attach"
	"github.com/strata-infra/strata/agent/storage/cachedvol"
	"github.com/strata-infra/strata/agent/storage/dmcache"
	"github.com/strata-infra/strata/pkg/computespec"
)

// diskBytes is what TestGuestInstanceDisk writes through each disk.
const diskBytes = 4 << 20

// TestGuestInstanceDisk attaches two krbd volumes the way the compute
// driver does before it hot-plugs them into a domain (attach.Host with
// this host's volume manager): one with a writeback cache, one uncached.
// The disk each domain would get is a block disk on a device that exists
// and carries what is written to it; when no instance keeps them any more
// Release flushes and unmaps both, and the host reads the raw images back
// (TestCachedVolumesInGuest). A nested guest is not booted: under TCG it
// would add minutes and prove only that qemu opens a block device.
func TestGuestInstanceDisk(t *testing.T) {
	requireGuest(t)
	guestSetup(t)
	ctx := t.Context()
	m := manager(t.TempDir(), "/dev/ram0")
	lv, err := attach.New("/nonexistent/libvirt-sock", attach.Client{
		Monitors: []netip.AddrPort{netip.MustParseAddrPort(os.Getenv(envMon))}, User: "admin", SecretUUID: "unused"})
	if err != nil {
		t.Fatal(err)
	}
	var claims []string
	h := attach.NewHost(lv, func(pool, image string) ([]string, error) {
		// The host's claim fences other librbd writers off the image; the
		// guest's only client is its own krbd.
		claims = append(claims, pool+"/"+image)
		return nil, nil
	}, nil)
	h.UseKernel(m)
	vols := []computespec.Volume{
		{Pool: os.Getenv(envPool), Image: image(t, "disk").Name, Serial: "disk",
			KRBD: &computespec.KRBD{CacheMode: "writeback", CacheBytes: 32 << 20, HighWatermark: 95, LowWatermark: 90}},
		{Pool: os.Getenv(envPool), Image: image(t, "diskn").Name, Serial: "diskn", KRBD: &computespec.KRBD{CacheMode: "none"}},
	}
	for i, v := range vols {
		disk, err := h.KernelDisk(ctx, v, "vdb")
		if err != nil {
			t.Fatal(err)
		}
		x, _ := disk.Marshal()
		t.Logf("the domain's disk of %s:\n%s", v.Serial, x)
		if disk.Source == nil || disk.Source.Block == nil || disk.Source.Block.Dev != cachedvol.DevicePath(v.Image) {
			t.Fatalf("disk of %s is not a block disk on %s: %s", v.Serial, cachedvol.DevicePath(v.Image), x)
		}
		dev := disk.Source.Block.Dev
		if fi, err := os.Stat(dev); err != nil || fi.Mode()&os.ModeDevice == 0 {
			t.Fatalf("the device the domain would open, %s: %v %v", dev, err, fi)
		}
		data := Pattern(uint64(20+i), diskBytes)
		writeAll(t, dev, data)
		if got := readBack(t, dev, diskBytes); string(got) != string(data) {
			t.Fatalf("%s does not read back what was written", dev)
		}
		st := dirty(t, m, v.Image)
		t.Logf("%s after writing %d MiB: %+v", v.Serial, diskBytes>>20, st)
		if v.KRBD.CacheMode == "writeback" && (st.Mode != dmcache.Writeback || st.DirtyBytes() == 0) {
			t.Fatalf("the writeback disk's cache holds nothing dirty: %+v", st)
		}
		// Attaching again (the next pass) changes nothing.
		if again, err := h.KernelDisk(ctx, v, "vdb"); err != nil || again.Source.Block.Dev != dev {
			t.Fatalf("second attach: %v", err)
		}
	}
	if len(claims) != 2 {
		t.Fatalf("claims %v: want one per volume, none for an image this host has mapped", claims)
	}
	if err := h.Release(ctx, vols[1:]); err != nil {
		t.Fatal(err)
	}
	if err := h.WaitReleases(ctx); err != nil {
		t.Fatal(err)
	}
	if recs, _ := m.Records(); len(recs) != 1 || recs[0].Volume != vols[1].Image {
		t.Fatalf("after releasing the cached volume the records are %+v", recs)
	}
	if err := h.Release(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.WaitReleases(ctx); err != nil {
		t.Fatal(err)
	}
	checkGone(t, m, vols[0].Image, image(t, "disk"))
	checkGone(t, m, vols[1].Image, image(t, "diskn"))
}
