package guesttest

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/storage/attach"
	"github.com/strata-infra/strata/agent/storage/cachedvol"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
)

// releasedVolume is the image TestGuestReleaseFlushesFirst detaches. (This
// file sorts before guest_test.go: the guest runs the tests in file order,
// and TestGuestCacheSurvivesCrash there crashes it.)
const releasedVolume = "rel"

// drainedVolume is the image TestGuestDrainBeforeUnplug writes back and
// detaches.
const drainedVolume = "drn"

// TestGuestReleaseFlushesFirst: a krbd volume with a writeback cache
// holding dirty blocks is attached and let go through the agent's own
// path, the volumes door compute uses (attach.Host: KernelDisk before the
// hot-plug, Release once no domain has it: a detach, the instance deleted
// or moved away). Release flushes the cache to zero dirty blocks first,
// with the flush in the volume's report while it runs ("N dirty blocks
// left (M when it began)", what the coordinator shows as the volume's
// status), then takes the cache down and unmaps the image, which lets its
// exclusive lock go. The host reads the raw image back afterwards.
func TestGuestReleaseFlushesFirst(t *testing.T) {
	requireGuest(t)
	guestSetup(t)
	ctx := t.Context()
	img := image(t, releasedVolume)
	m := manager(t.TempDir(), "/dev/ram0")
	var mu sync.Mutex
	var seen []api.VolumeFlush
	m.Changed = func() {
		sts, err := m.Statuses(context.Background())
		if err != nil {
			t.Errorf("statuses during the flush: %v", err)
			return
		}
		for _, s := range sts {
			if r := s.Report(img.String()); r.Flush != nil {
				mu.Lock()
				seen = append(seen, *r.Flush)
				mu.Unlock()
			}
		}
	}
	mon, err := netip.ParseAddrPort(os.Getenv(envMon))
	if err != nil {
		t.Fatal(err)
	}
	// The librbd half is never used here (no libvirtd in the guest); the
	// host's claim is the storage controller's fence, which has nothing
	// to fence off a fresh image.
	lv, err := attach.New("/nonexistent/libvirt-sock", attach.Client{Monitors: []netip.AddrPort{mon}, User: os.Getenv(envUser),
		SecretUUID: "5f1c3a58-7d36-4c57-9d35-000000000001"})
	if err != nil {
		t.Fatal(err)
	}
	h := attach.NewHost(lv, func(pool, image string) ([]string, error) { return nil, nil }, slog.Default())
	h.UseKernel(m)
	v := computespec.Volume{Pool: img.Pool, Image: img.Name, Serial: releasedVolume,
		KRBD: &computespec.KRBD{CacheMode: "writeback", CacheBytes: cacheBytes, HighWatermark: 95, LowWatermark: 90}}
	disk, err := h.KernelDisk(ctx, v, "vdb")
	if err != nil {
		t.Fatal(err)
	}
	dev := disk.Source.Block.Dev
	if dev != cachedvol.DevicePath(img.Name) {
		t.Fatalf("the domain's disk is %s, want %s", dev, cachedvol.DevicePath(img.Name))
	}
	writeAll(t, dev, Pattern(40, dataBytes))
	before := dirty(t, m, img.Name)
	if before.Dirty == 0 || before.DirtyBytes() < dataBytes/2 {
		t.Fatalf("the cache holds %d dirty bytes after a %d byte write: the writes went around it", before.DirtyBytes(), dataBytes)
	}
	// Still wanted: nothing happens.
	if err := h.Release(ctx, []computespec.Volume{v}); err != nil {
		t.Fatal(err)
	}
	if st := dirty(t, m, img.Name); st.Dirty == 0 {
		t.Fatalf("a release that keeps the volume flushed it: %+v", st)
	}
	// The detach runs beside the pass that asks for it: Release returns
	// at once, and the flush goes on.
	start := time.Now()
	if err := h.Release(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.WaitReleases(ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	checkGone(t, m, img.Name, img)
	mu.Lock()
	defer mu.Unlock()
	var lines []string
	for _, f := range seen {
		lines = append(lines, fmt.Sprintf("%d/%d %s", f.DirtyBlocks, f.FirstBlocks, f.Message))
	}
	t.Logf("release flushed %d dirty blocks (%d MiB) and unmapped in %s; the volume's report meanwhile:\n  %s",
		before.Dirty, before.DirtyBytes()>>20, took.Round(time.Millisecond), strings.Join(lines, "\n  "))
	if len(seen) == 0 || seen[0].FirstBlocks == 0 || seen[0].FirstBlocks < before.Dirty/2 ||
		!strings.Contains(seen[0].Message, fmt.Sprintf("dirty blocks left (%d when it began)", seen[0].FirstBlocks)) {
		t.Fatalf("the flush was not in the volume's report while it ran: %+v", seen)
	}
	for _, f := range seen {
		if f.Error != "" {
			t.Errorf("a flush error in the report: %s", f.Error)
		}
	}
	if took > 3*time.Second {
		// Long enough for progress lines (every second): one shows the
		// flush under way.
		mid := false
		for _, f := range seen {
			mid = mid || f.DirtyBlocks > 0 && f.DirtyBlocks < f.FirstBlocks
		}
		if !mid {
			t.Errorf("a %s flush showed no progress line with blocks written back and blocks left", took.Round(time.Millisecond))
		}
	}
}

// TestGuestDrainBeforeUnplug: the write-back before a hot-unplug, on real
// dm-writecache, while a writer (the guest that still has the disk) keeps
// the device open and rewrites its first 64 KiB: the dirty blocks fall to
// at most a small tail with the device still open and writes flowing, the
// detach is refused while it is open and, once it is closed, flushes
// that tail, tears the cache down and unmaps. The host reads the raw
// image back: all of it.
func TestGuestDrainBeforeUnplug(t *testing.T) {
	requireGuest(t)
	guestSetup(t)
	ctx := t.Context()
	img := image(t, drainedVolume)
	m := manager(t.TempDir(), "/dev/ram0")
	dev, err := m.Attach(ctx, writeback(drainedVolume, img))
	if err != nil {
		t.Fatal(err)
	}
	data := Pattern(42, dataBytes)
	writeAll(t, dev, data)
	before := dirty(t, m, drainedVolume)
	if before.DirtyBytes() < dataBytes/2 {
		t.Fatalf("the cache holds %d dirty bytes after a %d byte write: the writes went around it", before.DirtyBytes(), dataBytes)
	}
	f, err := os.OpenFile(dev, os.O_WRONLY|syscall.O_DIRECT|syscall.O_DSYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	hot, err := syscall.Mmap(-1, 0, 64<<10, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(hot)
	copy(hot, data)
	stop, stopped := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		defer func() { stopped <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := f.WriteAt(hot, 0); err != nil {
				t.Errorf("a write while the cache is written back: %v", err)
				return
			}
			n++
		}
	}()
	start := time.Now()
	err = m.DrainForDetach(ctx, drainedVolume)
	took := time.Since(start)
	after := dirty(t, m, drainedVolume)
	if derr := m.Detach(ctx, drainedVolume); derr == nil || !strings.Contains(derr.Error(), "still open") {
		t.Errorf("a detach with the device open: %v", derr)
	}
	close(stop)
	writes := <-stopped
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("written back before the unplug: %d of %d dirty blocks in %s, %d blocks left, %d writes meanwhile",
		before.Dirty-after.Dirty, before.Dirty, took.Round(time.Millisecond), after.Dirty, writes)
	if tail := max(before.Dirty/100, 256); after.Dirty > tail {
		t.Fatalf("%d dirty blocks left after the write-back (at most %d)", after.Dirty, tail)
	}
	if writes == 0 {
		t.Fatal("no write went through while the cache was written back")
	}
	if err := m.Detach(ctx, drainedVolume); err != nil {
		t.Fatal(err)
	}
	checkGone(t, m, drainedVolume, img)
}
