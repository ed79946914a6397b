package guesttest

// The tests in this file run only inside the kernel-test guest (Debian's
// kernel: krbd, dm-writecache, dm-cache); TestCachedVolumesInGuest in
// host_test.go boots it, with the host's Ceph cluster reachable at the
// addresses in Ceph's own maps, and checks the images on the host
// afterwards.

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/strata-infra/strata/agent/storage/cachedvol"
	"github.com/strata-infra/strata/agent/storage/dmcache"
	"github.com/strata-infra/strata/agent/storage/krbd"
	"github.com/strata-infra/strata/internal/kerneltest"
	"github.com/strata-infra/strata/internal/testenv"
)

// Environment the host test hands the guest.
const (
	envMon    = "STRATA_CV_MON"    // v1 monitor address
	envUser   = "STRATA_CV_USER"   // cephx id
	envKey    = "STRATA_CV_KEY"    // its key
	envPool   = "STRATA_CV_POOL"   // the pool of the images
	envImages = "STRATA_CV_IMAGES" // name=image,...
	envCtl    = "STRATA_CV_CTL"    // the host's control server, as the guest reaches it
	envPhase  = "STRATA_CV_PHASE"  // crash test: "write" (then crash) or "recover"
	envRecord = "STRATA_CV_RECORD" // crash test, recover: the record the first guest left
	envHelper = "STRATA_CV_HELPER" // "detach": this process is the agent that gets killed
	envState  = "STRATA_CV_STATE"  // the helper's state dir
	envFast   = "STRATA_CV_FAST"   // the helper's fast device
)

// Lines the guest prints for the host.
const (
	crashPoint   = "CACHEDVOL-CRASHPOINT"
	recordPrefix = "CACHEDVOL-RECORD "
)

// Sizes: enough dirty data that a flush takes seconds under TCG.
const (
	cacheBytes = 96 << 20
	dataBytes  = 24 << 20
)

func requireGuest(t *testing.T) {
	t.Helper()
	if !kerneltest.InGuest() {
		t.Skip("runs inside the kernel-test guest; TestCachedVolumesInGuest runs it there")
	}
}

// guestSetup loads the modules once per boot.
func guestSetup(t *testing.T) {
	t.Helper()
	for _, m := range [][]string{{"rbd"}, {"dm-writecache"}, {"dm-cache"}, {"dm-cache-smq"}, {"dm-flakey"},
		{"brd", "rd_nr=2", "rd_size=" + strconv.Itoa(cacheBytes/1024+4096)}, {"virtio_blk"}} {
		if _, err := os.Stat("/sys/module/" + strings.ReplaceAll(m[0], "-", "_")); err == nil {
			continue
		}
		if out, err := exec.Command("modprobe", m...).CombinedOutput(); err != nil {
			t.Fatalf("modprobe %v: %v: %s", m, err, out)
		}
	}
}

func image(t *testing.T, name string) krbd.Image {
	t.Helper()
	for _, kv := range strings.Split(os.Getenv(envImages), ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return krbd.Image{Pool: os.Getenv(envPool), Name: v}
		}
	}
	t.Fatalf("no image %q in $%s=%q", name, envImages, os.Getenv(envImages))
	return krbd.Image{}
}

func manager(state, fast string) *cachedvol.Manager {
	return &cachedvol.Manager{
		DM:     dmcache.DMSetup{},
		Mapper: &krbd.Mapper{},
		Auth: krbd.Auth{Monitors: []string{os.Getenv(envMon)}, User: os.Getenv(envUser),
			Key: os.Getenv(envKey)},
		Fast: cachedvol.BlockDevice(fast), StateDir: state,
		Exclusive: true, ProgressEvery: time.Second,
		FlushTimeout: testenv.Scale(5 * time.Minute),
	}
}

// writeback is the type every test uses: the cache holds what is written
// (high watermark 95 %) until it is flushed.
func writeback(name string, img krbd.Image) cachedvol.Volume {
	return cachedvol.Volume{Name: name, Image: img, Mode: dmcache.Writeback, CacheBytes: cacheBytes,
		Params: dmcache.Params{HighWatermark: 95, LowWatermark: 90}}
}

// Pattern is the data a test writes: deterministic from seed, so the host
// regenerates it to compare with the image.
func Pattern(seed uint64, n int) []byte {
	b := make([]byte, n)
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := 0; i+8 <= n; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(b[i:], x)
	}
	return b
}

func writeAll(t *testing.T, dev string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, 0); err != nil {
		t.Fatalf("write %s: %v", dev, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("fsync %s: %v", dev, err)
	}
}

func readBack(t *testing.T, dev string, n int) []byte {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatalf("read %s: %v", dev, err)
	}
	return b
}

func dirty(t *testing.T, m *cachedvol.Manager, vol string) dmcache.Stats {
	t.Helper()
	st, err := m.Stats(context.Background(), vol)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestGuestCachedVolumeNothingLost maps an image, puts a writeback cache in
// front, writes a known pattern, and detaches (which flushes); then the
// same with the agent SIGKILLed in the middle of the flush and a new one
// started over the same state, which resumes the flush. The host reads both
// raw images back afterwards.
func TestGuestCachedVolumeNothingLost(t *testing.T) {
	requireGuest(t)
	guestSetup(t)
	ctx := t.Context()

	t.Run("detach", func(t *testing.T) {
		m := manager(t.TempDir(), "/dev/ram0")
		dev, err := m.Attach(ctx, writeback("nl", image(t, "nl")))
		if err != nil {
			t.Fatal(err)
		}
		writeAll(t, dev, Pattern(1, dataBytes))
		st := dirty(t, m, "nl")
		t.Logf("after writing %d MiB: %+v", dataBytes>>20, st)
		if st.DirtyBytes() < dataBytes/2 {
			t.Fatalf("the cache holds %d dirty bytes after a %d byte write: the writes went around it", st.DirtyBytes(), dataBytes)
		}
		start := time.Now()
		if err := m.Detach(ctx, "nl"); err != nil {
			t.Fatal(err)
		}
		t.Logf("detach flushed %d dirty bytes in %s", st.DirtyBytes(), time.Since(start).Round(time.Millisecond))
		checkGone(t, m, "nl", image(t, "nl"))
	})

	t.Run("agent killed mid-flush", func(t *testing.T) {
		state := t.TempDir()
		m := manager(state, "/dev/ram1")
		dev, err := m.Attach(ctx, writeback("kill", image(t, "kill")))
		if err != nil {
			t.Fatal(err)
		}
		writeAll(t, dev, Pattern(2, dataBytes))
		before := dirty(t, m, "kill")
		// The agent that detaches, in its own process, to be killed.
		cmd := exec.Command(os.Args[0], "-test.run", "^TestGuestHelperDetach$", "-test.v")
		cmd.Env = append(os.Environ(), envHelper+"=detach", envState+"="+state, envFast+"=/dev/ram1")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// Kill it once the flush is under way: fewer dirty blocks than
		// before, but not none.
		var mid dmcache.Stats
		_, err = testenv.Poll(testenv.Scale(2*time.Minute), func() error {
			select {
			case err := <-exited:
				return fmt.Errorf("the detaching agent exited before it was killed (%v): the flush was not caught mid-way", err)
			default:
			}
			mid = dirty(t, m, "kill")
			if mid.Dirty > 0 && mid.Dirty < before.Dirty {
				return nil
			}
			return fmt.Errorf("dirty blocks %d (before %d)", mid.Dirty, before.Dirty)
		})
		if err != nil {
			cmd.Process.Kill()
			t.Fatal(err)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		<-exited
		t.Logf("agent killed with %d of %d blocks dirty", mid.Dirty, before.Dirty)
		recs, err := m.Records()
		if err != nil || len(recs) != 1 || recs[0].Phase != cachedvol.PhaseDetaching {
			t.Fatalf("after the kill the record should say detaching: %v %+v", err, recs)
		}
		// The agent starts again.
		start := time.Now()
		if err := manager(state, "/dev/ram1").Recover(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("the restarted agent finished the flush and the detach in %s", time.Since(start).Round(time.Millisecond))
		checkGone(t, m, "kill", image(t, "kill"))
	})
}

// TestGuestHelperDetach is the agent process TestGuestCachedVolumeNothingLost
// kills mid-flush.
func TestGuestHelperDetach(t *testing.T) {
	requireGuest(t)
	if os.Getenv(envHelper) != "detach" {
		t.Skip("only as the helper process of TestGuestCachedVolumeNothingLost")
	}
	err := manager(os.Getenv(envState), os.Getenv(envFast)).Detach(context.Background(), "kill")
	t.Fatalf("the detach returned (%v) before the test killed it", err)
}

// checkGone checks that nothing of vol is left on the host.
func checkGone(t *testing.T, m *cachedvol.Manager, vol string, img krbd.Image) {
	t.Helper()
	if recs, err := m.Records(); err != nil || len(recs) != 0 {
		t.Errorf("records left after the detach: %v %+v", err, recs)
	}
	if st := dirty(t, m, vol); st.Mode != dmcache.None {
		t.Errorf("the cache device of %s is still there: %+v", vol, st)
	}
	if d, ok, err := (&krbd.Mapper{}).Find(img); err != nil || ok {
		t.Errorf("%s still mapped: %v %+v", img, err, d)
	}
}

// TestGuestSnapshotOfCachedVolume takes a snapshot (by the host, through
// the control server, as the storage controller would) while a writer goes
// on writing through the writeback cache, and checks on the snapshot,
// mapped read-only, every write acknowledged before the snapshot.
func TestGuestSnapshotOfCachedVolume(t *testing.T) {
	requireGuest(t)
	guestSetup(t)
	ctx := t.Context()
	m := manager(t.TempDir(), "/dev/ram0")
	img := image(t, "snap")
	dev, err := m.Attach(ctx, writeback("snap", img))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Detach(context.Background(), "snap")
	f, err := os.OpenFile(dev, os.O_WRONLY|syscall.O_DIRECT|syscall.O_DSYNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const blocks = 4096 // 16 MiB of 4 KiB blocks
	var acked atomic.Int64
	stop := make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		buf := aligned(4096)
		for i := int64(0); i < blocks; i++ {
			select {
			case <-stop:
				werr <- nil
				return
			default:
			}
			fillBlock(buf, i)
			if _, err := f.WriteAt(buf, i*4096); err != nil {
				werr <- err
				return
			}
			acked.Store(i + 1)
		}
		werr <- nil
	}()
	testenv.WaitTrue(t, testenv.Scale(time.Minute), "the writer acknowledged 300 blocks", func() bool { return acked.Load() >= 300 })
	var atTake int64
	err = m.Snapshot(ctx, "snap", func(ctx context.Context) error {
		atTake = acked.Load()
		return hostSnapshot(ctx, img.Name, "s1")
	})
	if err != nil {
		t.Fatal(err)
	}
	// The writer goes on after the snapshot.
	testenv.WaitTrue(t, testenv.Scale(time.Minute), "the writer goes on after the snapshot", func() bool { return acked.Load() > atTake+50 })
	close(stop)
	if err := <-werr; err != nil {
		t.Fatalf("writer: %v", err)
	}
	f.Close() // the writer is the domain: gone before the detach
	t.Logf("snapshot s1 taken with %d blocks acknowledged, writer stopped at %d", atTake, acked.Load())

	mp := &krbd.Mapper{}
	sd, err := mp.Map(ctx, manager("", "").Auth, krbd.Image{Pool: img.Pool, Name: img.Name, Snap: "s1"}, krbd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Unmap(context.Background(), sd, false)
	got := readBack(t, sd.Path, int(atTake)*4096)
	want := aligned(4096)
	for i := int64(0); i < atTake; i++ {
		fillBlock(want, i)
		if string(got[i*4096:(i+1)*4096]) != string(want) {
			t.Fatalf("snapshot block %d of the %d acknowledged before it differs from what was written", i, atTake)
		}
	}
	if err := mp.Unmap(ctx, sd, false); err != nil {
		t.Fatal(err)
	}
	if err := m.Detach(ctx, "snap"); err != nil {
		t.Fatal(err)
	}
}

func aligned(n int) []byte {
	b := make([]byte, n+4096)
	off := 4096 - int(uintptr(unsafe.Pointer(&b[0]))%4096)
	return b[off%4096 : off%4096+n]
}

func fillBlock(b []byte, i int64) {
	copy(b, Pattern(uint64(i)+1000, len(b)))
}

// hostSnapshot asks the host test to snapshot the image.
func hostSnapshot(ctx context.Context, image, snap string) error {
	u := fmt.Sprintf("http://%s/snap?image=%s&snap=%s", os.Getenv(envCtl), image, snap)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("host snapshot %s@%s: %s: %s", image, snap, resp.Status, b)
	}
	return nil
}

// TestGuestFailingCacheDevice fails the fast device under a writethrough
// and a writeback volume (their slices' tables swapped for the error
// target): the writethrough volume falls back to the uncached device with
// every write intact, also when only its data device fails (dm-cache's
// status stays clean then); the writeback one refuses writes and its
// status says the data at risk.
func TestGuestFailingCacheDevice(t *testing.T) {
	requireGuest(t)
	guestSetup(t)
	ctx := t.Context()
	fail := func(name string) {
		t.Helper()
		sectors := strings.Fields(run(t, "dmsetup", "table", name))[1]
		if err := (dmcache.DMSetup{}).Reload(ctx, name, "0 "+sectors+" error"); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("writethrough falls back", func(t *testing.T) {
		m, img, dev := cacheOnRAM(t, "/dev/ram0", "wt", dmcache.Writethrough, 32<<20)
		first := writePromoted(t, dev, 4)
		fail("strata-wt-cdata")
		fail("strata-wt-cmeta")
		// A write that meets the failed device fails: it is not
		// acknowledged, so nothing is lost. dm-cache marks its metadata
		// failed at its next commit (a flush, or within a second).
		try := func() error {
			f, err := os.OpenFile(dev, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := f.WriteAt(first[:1<<20], 0); err != nil {
				return err
			}
			return f.Sync()
		}
		t.Logf("a write after the failure: %v", try())
		testenv.WaitFor(t, testenv.Scale(time.Minute), "dm-cache reports the failed device", func() error {
			if st := dirty(t, m, "wt"); st.Error == "" {
				try()
				return fmt.Errorf("status %+v", st)
			}
			return nil
		})
		if err := m.Check(ctx); err != nil {
			t.Fatalf("check of a failed writethrough cache: %v", err)
		}
		sts, _ := m.Statuses(ctx)
		if len(sts) != 1 || !sts[0].Degraded || sts[0].AtRisk {
			t.Fatalf("status after the fallback: %+v", sts)
		}
		if got := readBack(t, dev, len(first)); string(got) != string(first) {
			t.Fatal("after the fallback the volume does not hold what was written through the cache")
		}
		second := Pattern(5, 8<<20)
		writeAll(t, dev, second)
		if err := m.Detach(ctx, "wt"); err != nil {
			t.Fatal(err)
		}
		mp := &krbd.Mapper{}
		d, err := mp.Map(ctx, manager("", "").Auth, img, krbd.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer mp.Unmap(context.Background(), d, false)
		if got := readBack(t, d.Path, len(second)); string(got) != string(second) {
			t.Fatal("the image does not hold what was written after the fallback")
		}
	})

	t.Run("writethrough data device fails alone", func(t *testing.T) {
		// Only the cache's data device fails; its metadata device still
		// answers, so dm-cache's status stays clean: the agent's check
		// reads the data device and finds it.
		m, _, dev := cacheOnRAM(t, "/dev/ram0", "wt2", dmcache.Writethrough, 32<<20)
		first := writePromoted(t, dev, 8)
		fail("strata-wt2-cdata")
		st := dirty(t, m, "wt2")
		t.Logf("dm-cache status with its data device failed: %+v", st)
		if err := m.Check(ctx); err != nil {
			t.Fatalf("check of a writethrough cache whose data device failed: %v", err)
		}
		sts, _ := m.Statuses(ctx)
		if len(sts) != 1 || !sts[0].Degraded || sts[0].AtRisk {
			t.Fatalf("status after the data device failed: %+v", sts)
		}
		if got := readBack(t, dev, len(first)); string(got) != string(first) {
			t.Fatal("after the fallback the volume does not hold what was written through the cache")
		}
		if err := m.Detach(ctx, "wt2"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("writeback refuses writes", func(t *testing.T) {
		m, _, dev := cacheOnRAM(t, "/dev/ram1", "wbf", dmcache.Writeback, cacheBytes)
		writeAll(t, dev, Pattern(6, 4<<20))
		fail("strata-wbf-cdata")
		werr, serr := writeRefused(t, dev, 7, "a writeback cache on a failed device")
		t.Logf("write after the failure: %v, fsync: %v", werr, serr)
		// dm-writecache fails each write to the failed device but keeps a
		// clean status until a metadata commit fails (the error target
		// takes no flush, so that need not come); the agent's check
		// reads the data device (patrol) and takes its failure.
		if err := m.Check(ctx); err == nil || !strings.Contains(err.Error(), "writeback cache failed") {
			t.Fatalf("check of a failed writeback cache: %v", err)
		}
		// All 4 MiB written are at risk: nothing wrote them back.
		requireAtRisk(t, m, 4<<20, "a failed writeback cache")
		requireKept(t, m, "wbf", "a failed writeback cache")
	})
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

// TestGuestCacheSurvivesCrash runs in two guests. The first ("write")
// writes through a writeback cache on /dev/vda (a file on the host), leaves
// the blocks dirty, prints the agent's record (the host keeps it, as
// /var/lib/strata survives a reboot) and crashes the guest without a flush.
// The second ("recover") gets the record back, and the agent's Recover
// reassembles the cache from /dev/vda with its dirty blocks, serves the
// data through it, and the detach flushes it to the image, which the host
// reads back.
func TestGuestCacheSurvivesCrash(t *testing.T) {
	requireGuest(t)
	guestSetup(t)
	ctx := t.Context()
	state := filepath.Join(t.TempDir(), "state")
	m := manager(state, "/dev/vda")
	data := Pattern(3, dataBytes)
	switch os.Getenv(envPhase) {
	case "write":
		dev, err := m.Attach(ctx, writeback("crash", image(t, "crash")))
		if err != nil {
			t.Fatal(err)
		}
		writeAll(t, dev, data)
		st := dirty(t, m, "crash")
		if st.DirtyBytes() < dataBytes/2 {
			t.Fatalf("only %d dirty bytes in the cache before the crash", st.DirtyBytes())
		}
		b, err := os.ReadFile(filepath.Join(state, "crash.json"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("%s%s\n", recordPrefix, base64.StdEncoding.EncodeToString(b))
		fmt.Printf("%s dirty_bytes=%d\n", crashPoint, st.DirtyBytes())
		os.Stdout.Sync()
		// Crash: reboot at once, no sync, no unmount, no dm teardown
		// (qemu exits on the reboot).
		os.WriteFile("/proc/sys/kernel/sysrq", []byte("1"), 0o644)
		os.WriteFile("/proc/sysrq-trigger", []byte("b"), 0o200)
		time.Sleep(time.Minute)
		t.Fatal("still running a minute after the crash")
	case "recover":
		b, err := base64.StdEncoding.DecodeString(os.Getenv(envRecord))
		if err != nil {
			t.Fatal(err)
		}
		var r cachedvol.Record
		if err := json.Unmarshal(b, &r); err != nil || r.Volume != "crash" || r.Fresh {
			t.Fatalf("record from the first guest: %v %+v", err, r)
		}
		os.MkdirAll(state, 0o700)
		if err := os.WriteFile(filepath.Join(state, "crash.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := m.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		st := dirty(t, m, "crash")
		t.Logf("reassembled after the crash: %+v", st)
		if st.DirtyBytes() < dataBytes/2 {
			t.Fatalf("the reassembled cache has %d dirty bytes, the crashed one had about %d: it was not reassembled with its data", st.DirtyBytes(), dataBytes)
		}
		if got := readBack(t, "/dev/mapper/strata-crash", dataBytes); string(got) != string(data) {
			t.Fatal("data read through the reassembled cache differs from what was written before the crash")
		}
		if err := m.Detach(ctx, "crash"); err != nil {
			t.Fatal(err)
		}
		checkGone(t, m, "crash", image(t, "crash"))
	default:
		t.Skipf("only with %s=write or recover", envPhase)
	}
}
