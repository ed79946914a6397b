package mappedsnap

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/agent/storage/cachedvol"
	"github.com/strata-infra/strata/agent/storage/krbd"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/rbd"
	"github.com/strata-infra/strata/pkg/storagespec"
)

type fakeKernel struct {
	mu    sync.Mutex
	recs  []*cachedvol.Record
	calls []string
	fail  error
	// gate, when set, holds the write-back until closed.
	gate chan struct{}
}

func (k *fakeKernel) Records() ([]*cachedvol.Record, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.recs, nil
}

func (k *fakeKernel) SnapshotWith(ctx context.Context, volume string, progress func(cachedvol.Progress), take func(context.Context) error) error {
	k.mu.Lock()
	k.calls = append(k.calls, volume)
	gate, fail := k.gate, k.fail
	k.mu.Unlock()
	progress(cachedvol.Progress{Dirty: 70, First: 100, Elapsed: time.Second})
	if gate != nil {
		<-gate
	}
	if fail != nil {
		return fail
	}
	progress(cachedvol.Progress{Dirty: 0, First: 100, Elapsed: 2 * time.Second})
	return take(ctx)
}

type fakePool struct {
	mu    sync.Mutex
	snaps map[rbd.Ref]bool // protected
	made  []rbd.Ref
}

func (p *fakePool) Status(r rbd.Ref) (rbd.ImageStatus, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := rbd.ImageStatus{Ref: r}
	for s, prot := range p.snaps {
		if s.Pool == r.Pool && s.Image == r.Image {
			st.Snapshots = append(st.Snapshots, rbd.Snap{Name: s.Snap, Protected: prot})
		}
	}
	return st, nil
}

func (p *fakePool) Snapshot(r rbd.Ref, protect bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.snaps[r] = protect
	p.made = append(p.made, r)
	return nil
}

type res struct {
	kind, project, name string
	spec                any
}

func planOf(t *testing.T, epoch uint64, rs ...res) *plan.Host {
	t.Helper()
	s := &plan.Snapshot{Epoch: epoch}
	for _, r := range rs {
		b, err := json.Marshal(r.spec)
		if err != nil {
			t.Fatal(err)
		}
		s.Resources = append(s.Resources, api.Resource{Kind: r.kind, Project: r.project, Name: r.name, Epoch: epoch, Spec: b})
	}
	return plan.Decode(s)
}

var (
	cached   = res{"volumetype", "", "cached", api.VolumeTypeSpec{Pool: "volumes", AttachMode: "krbd", CacheMode: "writeback"}}
	plain    = res{"volumetype", "", "plain", api.VolumeTypeSpec{Pool: "volumes"}}
	volK     = res{"volume", "p", "k", api.VolumeSpec{SizeGiB: 1, Type: "cached"}}
	volL     = res{"volume", "p", "l", api.VolumeSpec{SizeGiB: 1, Type: "plain"}}
	volOther = res{"volume", "p", "o", api.VolumeSpec{SizeGiB: 1, Type: "cached"}}
	snapK    = res{"volumesnapshot", "p", "s", api.VolumeSnapshotSpec{Volume: "k"}}
	snapL    = res{"volumesnapshot", "p", "sl", api.VolumeSnapshotSpec{Volume: "l"}}
	snapO    = res{"volumesnapshot", "p", "so", api.VolumeSnapshotSpec{Volume: "o"}}
)

func rig(t *testing.T) (*Taker, *fakeKernel, *fakePool) {
	img := storagespec.VolumeImage("p", "k")
	k := &fakeKernel{recs: []*cachedvol.Record{{Volume: img, Image: krbd.Image{Pool: "volumes", Name: img}, Phase: cachedvol.PhaseAttached}}}
	p := &fakePool{snaps: map[rbd.Ref]bool{}}
	tk := New(Config{Host: "h2", Kernel: k, Connect: func() (Pool, error) { return p, nil },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Retry: 50 * time.Millisecond})
	return tk, k, p
}

func key(name string) api.Key { return api.Key{Kind: "volumesnapshot", Project: "p", Name: name} }

func waitState(t *testing.T, tk *Taker, name, state string) api.ResourceStatus {
	t.Helper()
	var st api.ResourceStatus
	testenv.WaitFor(t, testenv.Scale(10*time.Second), "snapshot "+name+" "+state, func() error {
		var ok bool
		st, ok = tk.Statuses()[key(name)]
		if !ok || st.State != state {
			return errors.New(st.State + ": " + st.Message)
		}
		return nil
	})
	return st
}

// TestTakesSnapshotsOfMappedVolumes: of the plan's snapshots, the host
// takes those of the krbd volumes it has attached, through the kernel's
// consistent snapshot, and reports their progress, then available; the
// snapshots of volumes it does not map (another host's, a librbd type's)
// it leaves to the storage controller and reports nothing on.
func TestTakesSnapshotsOfMappedVolumes(t *testing.T) {
	tk, k, p := rig(t)
	k.gate = make(chan struct{})
	ctx := context.Background()
	if err := tk.Ensure(ctx, planOf(t, 3, cached, plain, volK, volL, volOther, snapK, snapL, snapO)); err != nil {
		t.Fatal(err)
	}
	st := waitState(t, tk, "s", StatePending)
	testenv.WaitFor(t, testenv.Scale(10*time.Second), "the progress line", func() error {
		st = tk.Statuses()[key("s")]
		if !strings.Contains(st.Message, "70 dirty blocks left (100 when it began)") || !strings.Contains(st.Message, "host h2") {
			return errors.New(st.Message)
		}
		return nil
	})
	// A pass while it runs starts no second one.
	tk.Ensure(ctx, planOf(t, 3, cached, plain, volK, volL, volOther, snapK, snapL, snapO))
	close(k.gate)
	st = waitState(t, tk, "s", StateAvailable)
	if !strings.Contains(st.Message, "taken by host h2 with the volume's writes held") || st.Epoch != 3 {
		t.Errorf("status once taken: %+v", st)
	}
	want := rbd.Ref{Pool: "volumes", Image: storagespec.VolumeImage("p", "k"), Snap: storagespec.SnapshotName("p", "s")}
	if len(p.made) != 1 || p.made[0] != want || !p.snaps[want] {
		t.Errorf("snapshots made: %v (protected %v), want %v", p.made, p.snaps, want)
	}
	if len(k.calls) != 1 || k.calls[0] != storagespec.VolumeImage("p", "k") {
		t.Errorf("kernel snapshots: %v", k.calls)
	}
	sts := tk.Statuses()
	if _, ok := sts[key("sl")]; ok {
		t.Error("reported on the snapshot of a librbd volume")
	}
	if _, ok := sts[key("so")]; ok {
		t.Error("reported on the snapshot of a volume another host maps")
	}
	var rep api.HostReport
	tk.Report(&rep)
	if len(rep.Resources) != 1 || rep.Resources[0].Key != key("s") || rep.Resources[0].State != StateAvailable {
		t.Errorf("report: %+v", rep.Resources)
	}
	// Taken: the next passes leave it.
	tk.Ensure(ctx, planOf(t, 3, cached, volK, snapK))
	time.Sleep(20 * time.Millisecond)
	if len(k.calls) != 1 {
		t.Errorf("a taken snapshot was taken again: %v", k.calls)
	}
	// Gone from the plan: gone from the report.
	tk.Ensure(ctx, planOf(t, 4, cached, volK))
	if len(tk.Statuses()) != 0 {
		t.Errorf("statuses after the snapshot left the plan: %+v", tk.Statuses())
	}
}

// TestSnapshotFailureIsReportedAndRetried: a failed snapshot is an error
// status naming the host and why, tried again after Retry.
func TestSnapshotFailureIsReportedAndRetried(t *testing.T) {
	tk, k, p := rig(t)
	k.fail = errors.New("snapshot v: the cache failed (-5): its 4096 dirty bytes cannot be flushed")
	ctx := context.Background()
	tk.Ensure(ctx, planOf(t, 2, cached, volK, snapK))
	st := waitState(t, tk, "s", StateError)
	if !strings.Contains(st.Message, "host h2 could not take the snapshot") || !strings.Contains(st.Message, "cannot be flushed") {
		t.Errorf("error status: %+v", st)
	}
	if len(p.made) != 0 {
		t.Errorf("snapshot made after a failure: %v", p.made)
	}
	tk.Ensure(ctx, planOf(t, 2, cached, volK, snapK)) // within Retry: not again
	k.mu.Lock()
	k.fail = nil
	k.mu.Unlock()
	testenv.WaitFor(t, testenv.Scale(10*time.Second), "the retry", func() error {
		tk.Ensure(ctx, planOf(t, 2, cached, volK, snapK))
		if st := tk.Statuses()[key("s")]; st.State != StateAvailable {
			return errors.New(st.State)
		}
		return nil
	})
	if len(p.made) != 1 {
		t.Errorf("snapshots made: %v", p.made)
	}
}

// TestSnapshotAlreadyInCeph: a protected snapshot Ceph already holds (an
// agent restarted after taking it) is reported available, not taken again.
func TestSnapshotAlreadyInCeph(t *testing.T) {
	tk, k, p := rig(t)
	p.snaps[rbd.Ref{Pool: "volumes", Image: storagespec.VolumeImage("p", "k"), Snap: storagespec.SnapshotName("p", "s")}] = true
	tk.Ensure(context.Background(), planOf(t, 2, cached, volK, snapK))
	waitState(t, tk, "s", StateAvailable)
	if len(k.calls) != 0 || len(p.made) != 0 {
		t.Errorf("taken again: kernel %v, ceph %v", k.calls, p.made)
	}
}
