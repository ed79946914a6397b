// Package mappedsnap takes the snapshots of the krbd volumes this host has
// mapped. A mapped image's exclusive lock refuses librbd a snapshot, so the
// storage controller cannot take one of an attached krbd volume: the host
// that maps it does, consistent. It writes the volume's cache back while
// the writes flow, holds them, lets the image go, makes and protects the
// snapshot through librbd, maps the image again and lets the writes go
// (cachedvol.Manager.SnapshotWith). Each snapshot's progress and failure go
// into the host's report under the volumesnapshot's key, which the
// coordinator shows as the snapshot's status.
package mappedsnap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/agent/storage/cachedvol"
	"github.com/strata-infra/strata/agent/storage/cephconn"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/rbd"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// States of a snapshot in the report; the storage controller reports the
// same "available" once it finds the snapshot in Ceph.
const (
	StateAvailable = "available"
	StatePending   = api.ResourcePending
	StateError     = api.ResourceError
)

// Kernel is the host's krbd volume manager (*cachedvol.Manager).
type Kernel interface {
	Records() ([]*cachedvol.Record, error)
	SnapshotWith(ctx context.Context, volume string, progress func(cachedvol.Progress), take func(context.Context) error) error
}

// Pool is the part of librbd the snapshots need (*rbd.Conn).
type Pool interface {
	Status(r rbd.Ref) (rbd.ImageStatus, error)
	Snapshot(r rbd.Ref, protect bool) error
}

// Config is what a Taker needs.
type Config struct {
	Host    string
	Kernel  Kernel
	Connect func() (Pool, error)
	Logger  *slog.Logger
	// Changed is called when a snapshot's status changes (the agent
	// reports soon); nil: nothing.
	Changed func()
	// Retry is how long a failed snapshot waits before it is tried again
	// (30 s when 0).
	Retry time.Duration
}

// Taker is the reconciler of the snapshots of this host's mapped volumes.
type Taker struct {
	cfg Config

	mu      sync.Mutex
	ceph    cephconn.Lazy[Pool]
	status  map[api.Key]api.ResourceStatus
	running map[api.Key]bool
	failed  map[api.Key]time.Time // when the last try failed
}

// New returns a Taker; register it with the runner, after the storage
// controller, and its Report with the agent.
func New(cfg Config) *Taker {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Changed == nil {
		cfg.Changed = func() {}
	}
	if cfg.Retry == 0 {
		cfg.Retry = 30 * time.Second
	}
	return &Taker{cfg: cfg, ceph: cephconn.New(cfg.Connect), status: map[api.Key]api.ResourceStatus{}, running: map[api.Key]bool{}, failed: map[api.Key]time.Time{}}
}

// Name is the subsystem's name.
func (t *Taker) Name() string { return "mapped-snapshots" }

// Wanted is one snapshot of a krbd volume of the plan.
type Wanted struct {
	Key   api.Key
	Epoch uint64
	Ref   rbd.Ref // with Snap
}

// Snapshots lists the plan's snapshots of volumes whose type maps them
// through krbd, with their RBD names (as the storage controller names
// them).
func Snapshots(s *plan.Snapshot) []Wanted {
	krbdPool := map[string]string{} // type -> pool
	for _, r := range s.Kind("volumetype") {
		var ts api.VolumeTypeSpec
		if json.Unmarshal(r.Spec, &ts) == nil && ts.AttachMode == "krbd" && storagespec.ValidateType(ts) == nil {
			krbdPool[r.Name] = ts.Pool
		}
	}
	images := map[api.Key]rbd.Ref{}
	for _, r := range s.Kind("volume") {
		var vs api.VolumeSpec
		if json.Unmarshal(r.Spec, &vs) != nil {
			continue
		}
		if pool, ok := krbdPool[storagespec.TypeOf(vs)]; ok {
			images[r.Key()] = rbd.Ref{Pool: pool, Image: storagespec.VolumeImage(r.Project, r.Name)}
		}
	}
	var out []Wanted
	for _, r := range s.Kind("volumesnapshot") {
		var ss api.VolumeSnapshotSpec
		if json.Unmarshal(r.Spec, &ss) != nil {
			continue
		}
		img, ok := images[api.Key{Kind: "volume", Project: r.Project, Name: ss.Volume}]
		if !ok {
			continue
		}
		img.Snap = storagespec.SnapshotName(r.Project, r.Name)
		out = append(out, Wanted{Key: r.Key(), Epoch: r.Epoch, Ref: img})
	}
	return out
}

// Ensure starts a snapshot of every wanted snapshot whose volume this host
// has attached and that Ceph does not hold yet (protected); each runs on
// its own, so a long write-back stalls no pass and no other volume. A
// failed one is tried again after Retry. Snapshots of volumes this host
// does not map are the storage controller's.
func (t *Taker) Ensure(ctx context.Context, p *plan.Host) error {
	recs, err := t.cfg.Kernel.Records()
	if err != nil {
		return err
	}
	attached := map[rbd.Ref]string{} // image -> volume
	for _, r := range recs {
		if r.Phase == cachedvol.PhaseAttached {
			attached[rbd.Ref{Pool: r.Image.Pool, Image: r.Image.Name}] = r.Volume
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	mine := map[api.Key]bool{}
	for _, w := range Snapshots(p.Snapshot) {
		vol, ok := attached[rbd.Ref{Pool: w.Ref.Pool, Image: w.Ref.Image}]
		if !ok {
			continue
		}
		mine[w.Key] = true
		st, seen := t.status[w.Key]
		switch {
		case t.running[w.Key]:
		case seen && st.Epoch == w.Epoch && st.State == StateAvailable:
		case seen && st.Epoch == w.Epoch && st.State == StateError && time.Since(t.failed[w.Key]) < t.cfg.Retry:
		default:
			t.running[w.Key] = true
			go t.take(context.WithoutCancel(ctx), w, vol)
		}
	}
	// Forget the snapshots gone from the plan or from this host (a
	// running one forgets itself when it ends).
	for k := range t.status {
		if !mine[k] && !t.running[k] {
			delete(t.status, k)
			delete(t.failed, k)
		}
	}
	return nil
}

// take makes one snapshot and records its outcome.
func (t *Taker) take(ctx context.Context, w Wanted, volume string) {
	defer func() {
		t.mu.Lock()
		delete(t.running, w.Key)
		t.mu.Unlock()
		t.cfg.Changed()
	}()
	log := t.cfg.Logger.With("snapshot", w.Key, "rbd", w.Ref.String(), "volume", volume)
	set := func(state, msg string) {
		t.mu.Lock()
		t.status[w.Key] = api.ResourceStatus{State: state, Message: msg, Epoch: w.Epoch, Updated: time.Now().UTC()}
		if state == StateError {
			t.failed[w.Key] = time.Now()
		}
		t.mu.Unlock()
		t.cfg.Changed()
	}
	pool, err := t.conn()
	if err != nil {
		set(StateError, fmt.Sprintf("host %s maps the volume and cannot reach Ceph to snapshot it: %v", t.cfg.Host, err))
		return
	}
	if st, err := pool.Status(rbd.Ref{Pool: w.Ref.Pool, Image: w.Ref.Image}); err != nil {
		t.dropConn(pool)
		set(StateError, fmt.Sprintf("host %s: %v", t.cfg.Host, err))
		return
	} else if protectedSnap(st, w.Ref.Snap) {
		set(StateAvailable, "")
		return
	}
	start := time.Now()
	set(StatePending, fmt.Sprintf("host %s maps the volume and takes the snapshot: writing its cache back, then holding writes", t.cfg.Host))
	var held time.Time
	err = t.cfg.Kernel.SnapshotWith(ctx, volume, func(p cachedvol.Progress) {
		set(StatePending, fmt.Sprintf("host %s writes the volume's cache back before the snapshot: %d dirty blocks left (%d when it began) after %s",
			t.cfg.Host, p.Dirty, p.First, p.Elapsed.Round(time.Second)))
	}, func(context.Context) error {
		held = time.Now()
		set(StatePending, fmt.Sprintf("host %s holds the volume's writes (cache flushed, image unmapped) and makes the snapshot", t.cfg.Host))
		err := pool.Snapshot(w.Ref, true)
		if err != nil && !errors.Is(err, rbd.ErrExists) {
			t.dropConn(pool)
			return err
		}
		return nil
	})
	if err != nil {
		log.Error("snapshot of a mapped volume", "err", err)
		set(StateError, fmt.Sprintf("host %s could not take the snapshot (tried again in %s): %v", t.cfg.Host, t.cfg.Retry, err))
		return
	}
	msg := fmt.Sprintf("taken by host %s with the volume's writes held for %s (cache flushed first; %s in all)",
		t.cfg.Host, time.Since(held).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	log.Info("snapshot of a mapped volume taken", "took", time.Since(start).Round(time.Millisecond), "held", time.Since(held).Round(time.Millisecond))
	set(StateAvailable, msg)
}

func protectedSnap(st rbd.ImageStatus, name string) bool {
	for _, s := range st.Snapshots {
		if s.Name == name {
			return s.Protected
		}
	}
	return false
}

func (t *Taker) conn() (Pool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ceph.Get()
}

// dropConn forgets a connection that failed, so the next try reconnects.
func (t *Taker) dropConn(p Pool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ceph.Drop(p)
}

// Report adds the snapshots' statuses to the host's report.
func (t *Taker) Report(rep *api.HostReport) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, st := range t.status {
		rep.Resources = append(rep.Resources, api.ResourceReport{Key: k, ResourceStatus: st})
	}
}

// Statuses returns the snapshots' statuses (for tests and the report).
func (t *Taker) Statuses() map[api.Key]api.ResourceStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[api.Key]api.ResourceStatus, len(t.status))
	for k, v := range t.status {
		out[k] = v
	}
	return out
}
