package attach

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/storage/cachedvol"
	"github.com/strata-infra/strata/agent/storage/dmcache"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/computespec"
)

// fakeKernel records what the host asks of the krbd volume manager.
type fakeKernel struct {
	mu       sync.Mutex
	recs     map[string]bool
	attached []cachedvol.Volume
	detached []string
	drains   []string
	failOn   string                   // Detach of this volume fails (still open)
	hold     map[string]chan struct{} // Detach of these waits until closed (a long flush)
	running  map[string]int           // Detach calls under way
}

func (k *fakeKernel) Attach(_ context.Context, v cachedvol.Volume) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.attached = append(k.attached, v)
	k.recs[v.Name] = true
	return cachedvol.DevicePath(v.Name), nil
}

func (k *fakeKernel) Detach(_ context.Context, volume string) error {
	k.mu.Lock()
	if k.running == nil {
		k.running = map[string]int{}
	}
	k.running[volume]++
	hold := k.hold[volume]
	k.mu.Unlock()
	if hold != nil {
		<-hold
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.running[volume]--
	if volume == k.failOn {
		return errors.New("device-mapper: remove ioctl failed: Device or resource busy")
	}
	k.detached = append(k.detached, volume)
	delete(k.recs, volume)
	return nil
}

func (k *fakeKernel) DrainForDetach(_ context.Context, volume string) error {
	k.mu.Lock()
	k.drains = append(k.drains, volume)
	hold := k.hold["drain "+volume]
	k.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if volume == k.failOn {
		return errors.New("write-back before the unplug: deadline")
	}
	return nil
}

func (k *fakeKernel) Records() ([]*cachedvol.Record, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []*cachedvol.Record
	for n := range k.recs {
		out = append(out, &cachedvol.Record{Volume: n})
	}
	return out, nil
}

var krbdVol = computespec.Volume{Pool: "volumes", Image: "volume-k", Serial: "k", SizeBytes: 1 << 30,
	KRBD: &computespec.KRBD{CacheMode: "writeback", CacheBytes: 64 << 20, HighWatermark: 50, LowWatermark: 45, MaxDirtySeconds: 30}}

// TestKernelVolumeDisk: a krbd volume is a block disk on the device the
// manager makes, with the type's cache, and is found again among a
// domain's disks by that device; a librbd one stays a network disk.
func TestKernelVolumeDisk(t *testing.T) {
	v := volumeOf(krbdVol)
	if v.Dev != "/dev/mapper/strata-volume-k" || v.source() != v.Dev {
		t.Fatalf("device %q, source %q", v.Dev, v.source())
	}
	want := cachedvol.Volume{Name: "volume-k", Mode: dmcache.Writeback, CacheBytes: 64 << 20,
		Params: dmcache.Params{HighWatermark: 50, LowWatermark: 45, MaxAge: 30 * time.Second}}
	want.Image.Pool, want.Image.Name = "volumes", "volume-k"
	if *v.Cached != want {
		t.Fatalf("cached volume %+v, want %+v", *v.Cached, want)
	}
	lv := &Libvirt{client: Client{User: "strata", SecretUUID: "u"}}
	disk := lv.DiskXML(v, "vdb")
	x, err := disk.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`<disk type="block" device="disk">`, `<source dev="/dev/mapper/strata-volume-k">`,
		`cache="none" io="native"`, `<target dev="vdb" bus="virtio">`, `<serial>k</serial>`} {
		if !strings.Contains(x, s) {
			t.Errorf("krbd disk lacks %s:\n%s", s, x)
		}
	}
	if strings.Contains(x, "rbd") && strings.Contains(x, "protocol") {
		t.Errorf("krbd disk is a network disk:\n%s", x)
	}
	lib := volumeOf(computespec.Volume{Pool: "volumes", Image: "volume-l", Serial: "l"})
	if lib.Dev != "" || lib.Cached != nil || lib.source() != "volumes/volume-l" {
		t.Fatalf("librbd volume %+v", lib)
	}
	ldisk := lv.DiskXML(lib, "vdc")
	if x, _ := ldisk.Marshal(); !strings.Contains(x, `protocol="rbd"`) {
		t.Errorf("librbd disk:\n%s", x)
	}
	if !isKernelDev(v.Dev) || isKernelDev("/dev/sdb") || isKernelDev("/dev/mapper/vg0-root") {
		t.Error("isKernelDev takes devices that are not Strata's, or misses its own")
	}
}

// TestKernelVolumeAttachAndRelease: before a krbd volume is hot-plugged
// the host claims the image (unless it has it mapped already) and maps it
// with its cache; a host without krbd refuses it clearly; after a pass the
// volumes no instance keeps are detached (flushed), and one still open is
// reported and kept for the next pass.
func TestKernelVolumeAttachAndRelease(t *testing.T) {
	var claimed []string
	h := NewHost(&Libvirt{}, func(pool, image string) ([]string, error) {
		claimed = append(claimed, pool+"/"+image)
		return nil, nil
	}, nil)
	ctx := context.Background()
	if err := h.claimAttach(ctx, volumeOf(krbdVol)); err == nil || !strings.Contains(err.Error(), "no krbd") {
		t.Fatalf("a host without krbd attached a krbd volume: %v", err)
	}
	k := &fakeKernel{recs: map[string]bool{"volume-old": true}}
	h.UseKernel(k)
	for range 2 {
		if err := h.claimAttach(ctx, volumeOf(krbdVol)); err != nil {
			t.Fatal(err)
		}
	}
	if len(claimed) != 1 || claimed[0] != "volumes/volume-k" || len(k.attached) != 2 {
		t.Fatalf("claims %v, attaches %d: want one claim (the second finds its own mapping) and two idempotent attaches", claimed, len(k.attached))
	}
	if err := h.claimAttach(ctx, volumeOf(computespec.Volume{Pool: "volumes", Image: "volume-l"})); err != nil || len(k.attached) != 2 {
		t.Fatalf("a librbd volume went to the kernel: %v", err)
	}

	if err := h.Release(ctx, []computespec.Volume{krbdVol}); err != nil {
		t.Fatal(err)
	}
	if err := h.WaitReleases(ctx); err != nil {
		t.Fatal(err)
	}
	if len(k.detached) != 1 || k.detached[0] != "volume-old" {
		t.Fatalf("detached %v, want only volume-old", k.detached)
	}
	k.failOn = "volume-k"
	if err := h.Release(ctx, nil); err != nil {
		t.Fatalf("a release starts the detach and reports nothing yet: %v", err)
	}
	if err := h.WaitReleases(ctx); err == nil || !strings.Contains(err.Error(), "busy") || !k.recs["volume-k"] {
		t.Fatalf("release of an open volume: %v, records %v", err, k.recs)
	}
	// The next pass reports it, and tries again.
	if err := h.Release(ctx, nil); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("the next pass after a failed detach: %v", err)
	}
	h.WaitReleases(ctx)
	k.failOn = ""
	h.Release(ctx, nil)
	if err := h.WaitReleases(ctx); err != nil || len(k.recs) != 0 {
		t.Fatalf("once the guest let go: %v, records %v", err, k.recs)
	}
	if err := h.Release(ctx, nil); err != nil {
		t.Fatalf("a pass after the detach: %v", err)
	}
}

// TestReleaseRunsBesideThePass: a volume's detach (its cache's flush) runs
// on its own: Release returns at once, the next pass starts no second
// detach of it, and another volume's detach ends meanwhile.
func TestReleaseRunsBesideThePass(t *testing.T) {
	hold := make(chan struct{})
	k := &fakeKernel{recs: map[string]bool{"slow": true, "quick": true}, hold: map[string]chan struct{}{"slow": hold}}
	h := NewHost(&Libvirt{}, func(pool, image string) ([]string, error) { return nil, nil }, nil)
	h.UseKernel(k)
	ended := make(chan struct{}, 4)
	h.OnReleased(func() { ended <- struct{}{} })
	ctx := t.Context()
	defer func() {
		select {
		case <-hold:
		default:
			close(hold)
		}
		h.WaitReleases(context.Background())
	}()
	if err := h.Release(ctx, nil); err != nil {
		t.Fatal(err)
	}
	<-ended // the quick one
	testenv.WaitTrue(t, 10*time.Second, "the slow one's flush under way", func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.running["slow"] == 1
	})
	k.mu.Lock()
	detached := append([]string{}, k.detached...)
	k.mu.Unlock()
	if len(detached) != 1 || detached[0] != "quick" {
		t.Fatalf("detached %v with the slow one's flush under way", detached)
	}
	for range 3 {
		if err := h.Release(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	k.mu.Lock()
	running := k.running["slow"]
	k.mu.Unlock()
	if running != 1 {
		t.Fatalf("%d detaches of one volume at once", running)
	}
	close(hold)
	<-ended
	if err := h.WaitReleases(ctx); err != nil {
		t.Fatal(err)
	}
	if len(k.recs) != 0 {
		t.Fatalf("records left: %v", k.recs)
	}
}

// TestDrainBeforeUnplug: before a krbd disk leaves a running domain its
// cache is written back, on its own: the disk stays until that is done
// (the pass goes on), then may go once; a failure is returned and the
// disk stays; a librbd disk goes at once; a volume wanted again voids a
// write-back done for a detach called off.
func TestDrainBeforeUnplug(t *testing.T) {
	hold := make(chan struct{})
	k := &fakeKernel{recs: map[string]bool{}, hold: map[string]chan struct{}{"drain volume-k": hold}}
	h := NewHost(&Libvirt{}, func(pool, image string) ([]string, error) { return nil, nil }, nil)
	h.UseKernel(k)
	ended := make(chan struct{}, 4)
	h.OnReleased(func() { ended <- struct{}{} })
	ctx := t.Context()
	src := volumeOf(krbdVol).source()
	if ok, err := h.drainBeforeUnplug(ctx, "volumes/volume-l"); !ok || err != nil {
		t.Fatalf("a librbd disk: %v %v", ok, err)
	}
	for range 2 {
		if ok, err := h.drainBeforeUnplug(ctx, src); ok || err != nil {
			t.Fatalf("while the write-back runs: %v %v", ok, err)
		}
	}
	close(hold)
	<-ended
	if ok, err := h.drainBeforeUnplug(ctx, src); !ok || err != nil {
		t.Fatalf("after the write-back: %v %v", ok, err)
	}
	if len(k.drains) != 1 {
		t.Fatalf("write-backs %v: want one", k.drains)
	}
	// The next detach writes back again; a failure keeps the disk.
	k.failOn = "volume-k"
	h.drainBeforeUnplug(ctx, src)
	<-ended
	if ok, err := h.drainBeforeUnplug(ctx, src); ok || err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("after a failed write-back: %v %v", ok, err)
	}
	// Done, then wanted again: the next detach writes back anew.
	k.failOn = ""
	h.drainBeforeUnplug(ctx, src)
	<-ended
	h.wantedAgain([]computespec.Volume{krbdVol}) // what Set does first
	if ok, _ := h.drainBeforeUnplug(ctx, src); ok {
		t.Fatal("a write-back done for a detach called off let a later detach go at once")
	}
	<-ended
	if ok, err := h.drainBeforeUnplug(ctx, src); !ok || err != nil {
		t.Fatalf("after a new write-back: %v %v", ok, err)
	}
	// Called off while it runs: its end reports to nobody.
	hold2 := make(chan struct{})
	k.mu.Lock()
	k.hold["drain volume-k"] = hold2
	k.mu.Unlock()
	h.drainBeforeUnplug(ctx, src)
	h.wantedAgain([]computespec.Volume{krbdVol})
	close(hold2)
	<-ended
	if ok, _ := h.drainBeforeUnplug(ctx, src); ok {
		t.Fatal("a write-back called off while it ran let a later detach go at once")
	}
	<-ended
	if err := h.WaitReleases(ctx); err != nil {
		t.Fatal(err)
	}
}
