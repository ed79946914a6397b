package attach_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/compute"
	"github.com/strata-infra/strata/agent/storage/cachedvol"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/computespec"
	"github.com/strata-infra/strata/pkg/rbd"
)

// loopKernel is the host's krbd volume manager (attach.Kernel) where this
// host has neither krbd nor device-mapper: each volume is a loop device
// over a file (standing for the mapped, cache-fronted image), and its
// block node is put where the manager puts a volume's device,
// /dev/mapper/strata-<volume>, so the attach driver hot-plugs exactly the
// disk it would. Like the manager, it refuses to let a device go while a
// process still holds it open (the domain has not let go yet).
type loopKernel struct {
	dir string

	mu      sync.Mutex
	vols    map[string]*loopVol
	madeDir bool // /dev/mapper did not exist before
	busy    int  // Detach calls refused because the device was open
	// drainHold, while open, holds each write-back before an unplug (a
	// cache with dirty blocks being written back); drains counts them.
	drainHold chan struct{}
	drains    int
}

func (k *loopKernel) DrainForDetach(context.Context, string) error {
	k.mu.Lock()
	k.drains++
	hold := k.drainHold
	k.mu.Unlock()
	if hold != nil {
		<-hold
	}
	return nil
}

type loopVol struct {
	file, loop, node string
	rdev             uint64
}

const loopVolBytes = 32 << 20

func (k *loopKernel) Attach(ctx context.Context, v cachedvol.Volume) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if lv, ok := k.vols[v.Name]; ok {
		return lv.node, nil
	}
	lv := &loopVol{file: filepath.Join(k.dir, v.Name+".img"), node: cachedvol.DevicePath(v.Name)}
	if err := os.WriteFile(lv.file, nil, 0o600); err != nil {
		return "", err
	}
	if err := os.Truncate(lv.file, loopVolBytes); err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, "losetup", "--find", "--show", lv.file).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("losetup %s: %v: %s", lv.file, err, out)
	}
	lv.loop = strings.TrimSpace(string(out))
	k.vols[v.Name] = lv // from here on, Detach (or the test's cleanup) undoes it
	var st syscall.Stat_t
	if err := syscall.Stat(lv.loop, &st); err != nil {
		return "", err
	}
	lv.rdev = st.Rdev
	if _, err := os.Stat(filepath.Dir(lv.node)); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(filepath.Dir(lv.node), 0o755); err != nil {
			return "", err
		}
		k.madeDir = true
	}
	if err := syscall.Mknod(lv.node, syscall.S_IFBLK|0o600, int(st.Rdev)); err != nil {
		return "", fmt.Errorf("mknod %s: %w", lv.node, err)
	}
	return lv.node, nil
}

func (k *loopKernel) Detach(_ context.Context, volume string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	lv, ok := k.vols[volume]
	if !ok {
		return nil
	}
	if pid := openBy(lv.rdev); pid != 0 {
		k.busy++
		return fmt.Errorf("%s (%s) is busy: open by pid %d", lv.node, lv.loop, pid)
	}
	return k.drop(volume)
}

// drop removes a volume's node and loop device, open or not.
func (k *loopKernel) drop(volume string) error {
	lv := k.vols[volume]
	if err := os.Remove(lv.node); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if out, err := exec.Command("losetup", "--detach", lv.loop).CombinedOutput(); err != nil {
		return fmt.Errorf("losetup --detach %s: %v: %s", lv.loop, err, out)
	}
	delete(k.vols, volume)
	return nil
}

func (k *loopKernel) Records() ([]*cachedvol.Record, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []*cachedvol.Record
	for n := range k.vols {
		out = append(out, &cachedvol.Record{Volume: n, Phase: cachedvol.PhaseAttached})
	}
	return out, nil
}

// cleanup drops what is left and /dev/mapper if this test made it.
func (k *loopKernel) cleanup(t *testing.T) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for n := range k.vols {
		if err := k.drop(n); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	if k.madeDir {
		os.Remove(filepath.Dir(cachedvol.DevicePath(""))) // only if empty: another run may use it
	}
}

// openBy is a process holding the block device rdev open, or 0.
func openBy(rdev uint64) int {
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		var st syscall.Stat_t
		if syscall.Stat(fd, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFBLK && st.Rdev == rdev {
			var pid int
			fmt.Sscanf(strings.TrimPrefix(fd, "/proc/"), "%d", &pid)
			return pid
		}
	}
	return 0
}

// TestKernelDiskHotPlug drives the compute driver, with this package as
// its volume door, against a private libvirtd: a krbd volume is
// hot-plugged into a running TCG guest as a block disk on the device the
// volume manager hands over (<disk type='block'>, cache none, native
// AIO), the guest sees it and writes a record to it, which lands in the
// device's backing store on the host; the volume is hot-unplugged, the
// guest sees it go, and the host lets the device go only once qemu has
// closed it. This host has no krbd and no device-mapper (the kernel
// guest's tests map real images with caches): the device is a loop device
// over a file, its node at the manager's path (loopKernel). The image is
// claimed in Ceph before the hot-plug as for any krbd volume.
func TestKernelDiskHotPlug(t *testing.T) {
	cl, keyring, conn := cephUser(t, "strata-k")
	if _, err := exec.LookPath("losetup"); err != nil {
		testenv.Missing(t, "losetup", "the hot-plugged block device is a loop device")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		testenv.Missing(t, "loop devices", err.Error())
	}
	ctx := context.Background()
	tag := testenv.Tag('k')
	kvol := rbd.Ref{Pool: "volumes", Image: "s7c-" + tag + "-kvol"}
	if err := conn.Create(kvol, loopVolBytes, "test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Remove(kvol, "", false) })

	k := &loopKernel{dir: t.TempDir(), vols: map[string]*loopVol{}, drainHold: make(chan struct{})}
	t.Cleanup(func() { k.cleanup(t) })
	g := newRBDGuest(t, cl, "strata-k", keyring, conn, tag, func(pool, image string) ([]string, error) {
		return conn.Claim(rbd.Ref{Pool: pool, Image: image})
	}, k)
	drv, in, console, d, id := g.drv, g.in, g.console, g.libvirtd, g.in.Spec.ID
	waitFor := func(what string, re *regexp.Regexp) []string {
		t.Helper()
		var m []string
		took := testenv.WaitTrue(t, testenv.Scale(4*time.Minute), what, func() bool {
			b, _ := os.ReadFile(console)
			m = re.FindStringSubmatch(string(b))
			return m != nil
		})
		t.Logf("%s: %s", what, took.Round(time.Millisecond))
		return m
	}
	if err := drv.Set(ctx, []compute.Instance{in}); err != nil {
		t.Fatal(err)
	}
	waitFor("the guest to boot", regexp.MustCompile(`strata-guest: disk vda 98304 sectors`))

	in.Spec.Volumes = []computespec.Volume{{Pool: kvol.Pool, Image: kvol.Image, Serial: "kdata", SizeBytes: loopVolBytes,
		KRBD: &computespec.KRBD{CacheMode: "writeback", CacheBytes: 16 << 20, HighWatermark: 50, LowWatermark: 45}}}
	for i := range 2 { // the second call changes nothing
		if err := drv.Set(ctx, []compute.Instance{in}); err != nil {
			t.Fatalf("hot-plug the krbd volume (call %d): %v", i+1, err)
		}
	}
	node := cachedvol.DevicePath(kvol.Image)
	dumpXML := func(flags ...string) string {
		t.Helper()
		x, err := exec.Command("virsh", append([]string{"-c", "qemu:///system?socket=" + d.Socket, "dumpxml", compute.DomainName(tag+"-", id)}, flags...)...).Output()
		if err != nil {
			t.Fatalf("virsh dumpxml: %v", err)
		}
		return string(x)
	}
	xml := dumpXML()
	disk := regexp.MustCompile(`(?s)<disk type='block' device='disk'>.*?</disk>`).FindString(xml)
	for _, s := range []string{`<source dev='` + node + `'`, `cache='none' io='native'`, `<target dev='vdb' bus='virtio'/>`, `<serial>kdata</serial>`} {
		if !strings.Contains(disk, s) {
			t.Errorf("the running domain's block disk lacks %s:\n%s", s, disk)
		}
	}
	if pid := openBy(k.vols[kvol.Image].rdev); pid == 0 {
		t.Error("no process holds the hot-plugged block device open")
	}

	m := waitFor("the guest to see vdb and write its record", regexp.MustCompile(`strata-guest: volume vdb wrote (strata-record \S+)`))
	record := m[1]
	// The write went through qemu (O_DIRECT) to the loop device and its
	// file: the host reads it there.
	b, err := os.ReadFile(k.vols[kvol.Image].file)
	if err != nil {
		t.Fatal(err)
	}
	if want := record + "\n"; !bytes.HasPrefix(b, []byte(want)) {
		t.Fatalf("the block device's store holds %q, want the guest's record %q", b[:64], want)
	}
	t.Logf("the guest wrote %q through the hot-plugged block disk; the host reads it in the device's store", record)

	// The detach writes the cache back first, on its own: meanwhile the
	// pass goes on and the disk stays the domain's (its definition too:
	// the unplug is not even asked for), and once it is done the next
	// pass unplugs it.
	in.Spec.Volumes = nil
	for range 2 {
		if err := drv.Set(ctx, []compute.Instance{in}); err != nil {
			t.Fatalf("a pass while the cache is written back: %v", err)
		}
	}
	if x := dumpXML("--inactive"); !strings.Contains(x, `<source dev='`+node+`'`) {
		t.Fatalf("the disk left the domain before its cache was written back:\n%s", x)
	}
	k.mu.Lock()
	drains := k.drains
	close(k.drainHold)
	k.mu.Unlock()
	if drains != 1 {
		t.Fatalf("%d write-backs before the unplug, want 1 across the passes", drains)
	}
	testenv.WaitTrue(t, testenv.Scale(time.Minute), "the unplug once the cache is written back", func() bool {
		if err := drv.Set(ctx, []compute.Instance{in}); err != nil && !strings.Contains(err.Error(), "busy") {
			t.Fatalf("hot-unplug: %v", err)
		}
		return !strings.Contains(dumpXML("--inactive"), node)
	})
	waitFor("the guest to see vdb go", regexp.MustCompile(`strata-guest: disk vdb gone`))
	// Each pass releases the devices no domain has; the one qemu still
	// holds is refused and tried again on the next pass.
	testenv.WaitTrue(t, testenv.Scale(time.Minute), "the host to let the unplugged device go", func() bool {
		drv.Set(ctx, []compute.Instance{in})
		recs, _ := k.Records()
		return len(recs) == 0
	})
	if _, err := os.Stat(node); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the device node %s is still there: %v", node, err)
	}
	t.Logf("device released after %d refusals while it was open", k.busy)
	if err := drv.Set(ctx, nil); err != nil {
		t.Fatal(err)
	}
}
