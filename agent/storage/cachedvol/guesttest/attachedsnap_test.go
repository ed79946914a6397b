package guesttest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/agent/storage/cachedvol"
	"github.com/strata-infra/strata/agent/storage/krbd"
	"github.com/strata-infra/strata/agent/storage/mappedsnap"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/rbd"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// The volume and snapshot of TestGuestSnapshotOfAttachedVolume's plan; the
// host names the image as the storage controller names a volume's.
const (
	attachedVolume = "asnap"
	attachedSnap   = "s1"
	envProject     = "STRATA_CV_PROJECT" // the plan's project
)

// TestGuestSnapshotOfAttachedVolume: a snapshot in the plan of a krbd
// volume this host has attached, with a writer going on through its
// writeback cache, is taken by this host's agent (mappedsnap.Taker over the
// real manager): it writes the cache back with progress in its status,
// holds the writes, makes and protects the snapshot, lets the writes go and
// reports the snapshot available. The snapshot holds every write
// acknowledged before the writes were held, and the volume caches new
// writes again afterwards.
func TestGuestSnapshotOfAttachedVolume(t *testing.T) {
	requireGuest(t)
	guestSetup(t)
	ctx := t.Context()
	project := os.Getenv(envProject)
	img := image(t, attachedVolume)
	if img.Name != storagespec.VolumeImage(project, attachedVolume) {
		t.Fatalf("image %s is not volume %s/%s's", img.Name, project, attachedVolume)
	}
	m := manager(t.TempDir(), "/dev/ram0")
	v := writeback(img.Name, img)
	dev, err := m.Attach(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Detach(context.Background(), v.Name)
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
			fillBlock(buf, i+5000)
			if _, err := f.WriteAt(buf, i*4096); err != nil {
				werr <- err
				return
			}
			acked.Store(i + 1)
		}
		werr <- nil
	}()
	testenv.WaitTrue(t, testenv.Scale(time.Minute), "the writer acknowledged 300 blocks", func() bool { return acked.Load() >= 300 })
	before := dirty(t, m, v.Name)
	if before.Dirty == 0 {
		t.Fatalf("nothing dirty in the cache before the snapshot: %+v", before)
	}

	k := &heldAt{Manager: m, acked: &acked}
	var mu sync.Mutex
	var messages []string
	var tk *mappedsnap.Taker
	tk = mappedsnap.New(mappedsnap.Config{Host: "guest", Kernel: k,
		Connect: func() (mappedsnap.Pool, error) { return hostPool{}, nil },
		Changed: func() {
			st := tk.Statuses()[api.Key{Kind: "volumesnapshot", Project: project, Name: attachedSnap}]
			mu.Lock()
			if n := len(messages); st.Message != "" && (n == 0 || messages[n-1] != st.Message) {
				messages = append(messages, st.State+": "+st.Message)
			}
			mu.Unlock()
		}})
	p := guestPlan(t, project, img.Pool)
	start := time.Now()
	if err := tk.Ensure(ctx, p); err != nil {
		t.Fatal(err)
	}
	key := api.Key{Kind: "volumesnapshot", Project: project, Name: attachedSnap}
	var st api.ResourceStatus
	testenv.WaitFor(t, testenv.Scale(5*time.Minute), "the host to take the snapshot", func() error {
		st = tk.Statuses()[key]
		if st.State == mappedsnap.StateAvailable || st.State == mappedsnap.StateError {
			return nil
		}
		return fmt.Errorf("%s: %s", st.State, st.Message)
	})
	if st.State != mappedsnap.StateAvailable {
		t.Fatalf("snapshot failed: %s", st.Message)
	}
	took := time.Since(start)
	atTake := k.at.Load()
	mu.Lock()
	t.Logf("snapshot taken in %s with %d of %d blocks dirty before, %d blocks acknowledged when the writes were held; statuses:\n  %s",
		took.Round(time.Millisecond), before.Dirty, before.Blocks, atTake, strings.Join(messages, "\n  "))
	progress := strings.Join(messages, "\n")
	mu.Unlock()
	if !strings.Contains(progress, "dirty blocks left") || !strings.Contains(progress, "holds the volume's writes") {
		t.Errorf("the status did not show the write-back's progress and the hold")
	}
	if atTake < 300 {
		t.Fatalf("writes held at %d acknowledged blocks, want at least 300", atTake)
	}
	// The writer goes on, through the cache again.
	testenv.WaitTrue(t, testenv.Scale(time.Minute), "the writer goes on after the snapshot", func() bool { return acked.Load() > atTake+50 })
	testenv.WaitFor(t, testenv.Scale(time.Minute), "new writes cached again after the snapshot", func() error {
		if st := dirty(t, m, v.Name); st.Dirty == 0 {
			return fmt.Errorf("no dirty block: %+v", st)
		}
		return nil
	})
	close(stop)
	if err := <-werr; err != nil {
		t.Fatalf("writer: %v", err)
	}
	f.Close()

	ref := rbd.Ref{Pool: img.Pool, Image: img.Name, Snap: storagespec.SnapshotName(project, attachedSnap)}
	if ist, err := (hostPool{}).Status(ref); err != nil || len(ist.Snapshots) != 1 || !ist.Snapshots[0].Protected {
		t.Fatalf("the image's snapshots: %v %+v (want %s, protected)", err, ist.Snapshots, ref.Snap)
	}
	mp := &krbd.Mapper{}
	sd, err := mp.Map(ctx, manager("", "").Auth, krbd.Image{Pool: img.Pool, Name: img.Name, Snap: ref.Snap}, krbd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer mp.Unmap(context.Background(), sd, false)
	got := readBack(t, sd.Path, int(atTake)*4096)
	want := aligned(4096)
	for i := int64(0); i < atTake; i++ {
		fillBlock(want, i+5000)
		if string(got[i*4096:(i+1)*4096]) != string(want) {
			t.Fatalf("snapshot block %d of the %d acknowledged before the hold differs from what was written", i, atTake)
		}
	}
	if err := mp.Unmap(ctx, sd, false); err != nil {
		t.Fatal(err)
	}
	// Taken: a later pass leaves it.
	tk.Ensure(ctx, p)
	if n := k.calls.Load(); n != 1 {
		t.Errorf("%d kernel snapshots for one snapshot", n)
	}
	if err := m.Detach(ctx, v.Name); err != nil {
		t.Fatal(err)
	}
}

// heldAt is the real manager, noting how many blocks the writer had
// acknowledged when the snapshot was made (its writes held).
type heldAt struct {
	*cachedvol.Manager
	acked *atomic.Int64
	at    atomic.Int64
	calls atomic.Int64
}

func (h *heldAt) SnapshotWith(ctx context.Context, volume string, progress func(cachedvol.Progress), take func(context.Context) error) error {
	h.calls.Add(1)
	return h.Manager.SnapshotWith(ctx, volume, progress, func(ctx context.Context) error {
		h.at.Store(h.acked.Load())
		return take(ctx)
	})
}

// guestPlan is the plan a host gets: a krbd volume type, the volume and
// its snapshot.
func guestPlan(t *testing.T, project, pool string) *plan.Host {
	t.Helper()
	s := &plan.Snapshot{Epoch: 7}
	for _, r := range []struct {
		kind, project, name string
		spec                any
	}{
		{"volumetype", "", "cached", api.VolumeTypeSpec{Pool: pool, AttachMode: "krbd", CacheMode: "writeback"}},
		{"volume", project, attachedVolume, api.VolumeSpec{SizeGiB: 1, Type: "cached"}},
		{"volumesnapshot", project, attachedSnap, api.VolumeSnapshotSpec{Volume: attachedVolume}},
	} {
		b, err := json.Marshal(r.spec)
		if err != nil {
			t.Fatal(err)
		}
		s.Resources = append(s.Resources, api.Resource{Kind: r.kind, Project: r.project, Name: r.name, Epoch: 7, Spec: b})
	}
	return plan.Decode(s)
}

// hostPool is librbd as the guest reaches it: the host test's control
// server runs rbd against the cluster.
type hostPool struct{}

func (hostPool) Status(r rbd.Ref) (rbd.ImageStatus, error) {
	st := rbd.ImageStatus{Ref: rbd.Ref{Pool: r.Pool, Image: r.Image}}
	resp, err := http.Get(fmt.Sprintf("http://%s/snaps?image=%s", os.Getenv(envCtl), url.QueryEscape(r.Image)))
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("snapshots of %s: %s: %s", r.Image, resp.Status, b)
	}
	var snaps []struct {
		Name      string `json:"name"`
		Protected string `json:"protected"`
	}
	if err := json.Unmarshal(b, &snaps); err != nil {
		return st, fmt.Errorf("snapshots of %s: %v: %s", r.Image, err, b)
	}
	for _, s := range snaps {
		st.Snapshots = append(st.Snapshots, rbd.Snap{Name: s.Name, Protected: s.Protected == "true"})
	}
	return st, nil
}

func (hostPool) Snapshot(r rbd.Ref, protect bool) error {
	if !protect {
		return hostSnapshot(context.Background(), r.Image, r.Snap)
	}
	u := fmt.Sprintf("http://%s/snap?image=%s&snap=%s&protect=1", os.Getenv(envCtl), url.QueryEscape(r.Image), url.QueryEscape(r.Snap))
	resp, err := http.Post(u, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("host snapshot %s: %s: %s", r, resp.Status, b)
	}
	return nil
}
