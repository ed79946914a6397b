package compute

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/computespec"
)

// fakeMigrator moves domains between two fake hosts' hypervisors and
// copies files out of the exporting host's state dir.
type fakeMigrator struct {
	hvs      map[string]*fakeHV // by host
	dirs     map[string]string  // exported pools by name (one fake cluster)
	fail     error
	progress int
	calls    []string
}

func (m *fakeMigrator) MigrateLive(_ context.Context, domain, peer string, progress func(Progress)) error {
	m.calls = append(m.calls, "migrate "+domain+" to "+peer)
	if m.fail != nil {
		return m.fail
	}
	progress(Progress{Elapsed: time.Second, DataTotal: 160 << 20, DataProcessed: 80 << 20, DataRemaining: 80 << 20})
	m.progress++
	var src *fakeHV
	for h, hv := range m.hvs {
		if h != peer {
			if _, ok := hv.doms[domain]; ok {
				src = hv
			}
		}
	}
	d := *src.doms[domain]
	delete(src.doms, domain)
	m.hvs[peer].doms[domain] = &d
	return nil
}

func (m *fakeMigrator) Export(_ context.Context, pool, dir string) error {
	m.calls = append(m.calls, "export "+pool)
	m.dirs[pool] = dir
	return nil
}

func (m *fakeMigrator) Unexport(_ context.Context, pool string) error {
	if _, ok := m.dirs[pool]; ok {
		m.calls = append(m.calls, "unexport "+pool)
	}
	delete(m.dirs, pool)
	return nil
}

func (m *fakeMigrator) Fetch(_ context.Context, peer, pool, name, path string) error {
	m.calls = append(m.calls, "fetch "+name+" of "+pool+" from "+peer)
	dir, ok := m.dirs[pool]
	if !ok {
		return errors.New("no such pool")
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func (m *fakeMigrator) take() []string { c := m.calls; m.calls = nil; return c }

// twoHosts returns the drivers of hosts "src" and "dst" sharing one
// fake migrator.
func twoHosts(t *testing.T) (src, dst *Driver, mg *fakeMigrator) {
	mg = &fakeMigrator{hvs: map[string]*fakeHV{}, dirs: map[string]string{}}
	for _, h := range []string{"src", "dst"} {
		hv := &fakeHV{doms: map[string]*Domain{}}
		mg.hvs[h] = hv
		d, err := New(Config{Hypervisor: hv, StateDir: t.TempDir(), DomainType: DomainQEMU, ShutdownTimeout: time.Millisecond,
			Capacity: computespec.Capacity{VCPUs: 2, RAMMiB: 1024, DiskGiB: 10}, Migrator: mg})
		if err != nil {
			t.Fatal(err)
		}
		if h == "src" {
			src = d
		} else {
			dst = d
		}
	}
	return src, dst, mg
}

func moving(in Instance, peer string, out, live bool) Instance {
	in.Migration = &Migration{Peer: peer, Out: out, Live: live}
	return in
}

// TestColdMoveCopiesTheDisk: the source keeps the stopped domain and
// exports its files; the destination copies the disk (the guest's writes
// with it, not a new disk from the image) and defines the domain; the
// source deletes its copy when the move is over.
func TestColdMoveCopiesTheDisk(t *testing.T) {
	src, dst, mg := twoHosts(t)
	ctx := context.Background()
	in := fakeInstance(t, "a")
	in.Spec.Power = computespec.PowerStopped
	if err := src.Set(ctx, []Instance{in}); err != nil {
		t.Fatal(err)
	}
	written := bytes.Repeat([]byte("guest data "), 100)
	if err := os.WriteFile(filesOf(src.cfg.StateDir, "a").Disk, written, 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := src.Set(ctx, []Instance{moving(in, "dst", true, false)}); err != nil {
			t.Fatal(err)
		}
	}
	if c := mg.take(); !slices.Equal(c, []string{"export strata-out-a", "export strata-out-a"}) {
		t.Fatalf("source calls %v", c)
	}
	if src.status("a") != computespec.PowerStopped {
		t.Fatalf("source lost the domain during the move: %s", src.status("a"))
	}
	if err := dst.Set(ctx, []Instance{moving(in, "src", false, false)}); err != nil {
		t.Fatal(err)
	}
	if c := mg.take(); !slices.Equal(c, []string{"fetch disk of strata-out-a from src"}) {
		t.Fatalf("destination calls %v", c)
	}
	got, _ := os.ReadFile(filesOf(dst.cfg.StateDir, "a").Disk)
	if !bytes.Equal(got, written) {
		t.Fatalf("the destination's disk is not the source's (%d bytes)", len(got))
	}
	if dst.status("a") != computespec.PowerStopped {
		t.Fatalf("destination: %s", dst.status("a"))
	}
	// The move is over: the destination's plan has it plainly, the
	// source's no more.
	if err := dst.Set(ctx, []Instance{in}); err != nil {
		t.Fatal(err)
	}
	if err := src.Set(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if c := mg.take(); !slices.Equal(c, []string{"unexport strata-out-a"}) {
		t.Fatalf("calls at the end %v", c)
	}
	if _, err := os.Stat(filesOf(src.cfg.StateDir, "a").Dir); !os.IsNotExist(err) {
		t.Fatalf("source kept the instance's files: %v", err)
	}
}

// TestLiveMoveHandsTheDomainOver: the destination prepares the seed and
// defines nothing; the source migrates the running domain (a progress
// line on the way); the arrived domain is not redefined or restarted. A
// failed migration leaves the guest running on the source and says so
// with computespec.LiveMigrationFailed.
func TestLiveMoveHandsTheDomainOver(t *testing.T) {
	src, dst, mg := twoHosts(t)
	ctx := context.Background()
	in := fakeInstance(t, "a")
	if err := src.Set(ctx, []Instance{in}); err != nil {
		t.Fatal(err)
	}
	if err := dst.Set(ctx, []Instance{moving(in, "src", false, true)}); err != nil {
		t.Fatal(err)
	}
	if c := mg.hvs["dst"].takeCalls(); len(c) != 0 {
		t.Fatalf("the destination acted before the guest arrived: %v", c)
	}
	if _, err := os.Stat(filesOf(dst.cfg.StateDir, "a").Seed); err != nil {
		t.Fatalf("no seed ISO on the destination: %v", err)
	}
	mg.fail = errors.New("peer unreachable")
	err := src.Set(ctx, []Instance{moving(in, "dst", true, true)})
	if err == nil || !strings.Contains(err.Error(), computespec.LiveMigrationFailed+"peer unreachable") {
		t.Fatalf("failed migration: %v", err)
	}
	if s := src.Status().Instances[0]; s.Power != computespec.PowerRunning || !strings.HasPrefix(s.Error, computespec.LiveMigrationFailed) {
		t.Fatalf("source after a failed migration: %+v", s)
	}
	mg.fail = nil
	if err := src.Set(ctx, []Instance{moving(in, "dst", true, true)}); err != nil {
		t.Fatal(err)
	}
	if mg.progress != 1 || src.status("a") != computespec.PowerMissing {
		t.Fatalf("after the migration: %d progress calls, source has %s", mg.progress, src.status("a"))
	}
	mg.hvs["dst"].takeCalls()
	if err := dst.Set(ctx, []Instance{moving(in, "src", false, true)}); err != nil {
		t.Fatal(err)
	}
	if c := mg.hvs["dst"].takeCalls(); len(c) != 0 {
		t.Fatalf("the destination redefined or restarted the arrived guest: %v", c)
	}
	if dst.status("a") != computespec.PowerRunning {
		t.Fatalf("destination: %s", dst.status("a"))
	}
	if err := src.Set(ctx, nil); err != nil { // the move is over
		t.Fatal(err)
	}
}

// TestLiveMoveWaitsForTheDestination: the source may start a live move
// before the destination defined the Ceph secret; that refusal is tried
// again (no failure the coordinator would move the instance back for), a
// few times, and the move goes through once the destination is ready.
func TestLiveMoveWaitsForTheDestination(t *testing.T) {
	src, _, mg := twoHosts(t)
	ctx := context.Background()
	in := fakeInstance(t, "a")
	if err := src.Set(ctx, []Instance{in}); err != nil {
		t.Fatal(err)
	}
	mg.fail = errors.New("Secret not found: no secret with matching uuid 'a20908a3'")
	for i := 1; i <= maxTooEarly; i++ {
		err := src.Set(ctx, []Instance{moving(in, "dst", true, true)})
		if err == nil || strings.Contains(err.Error(), computespec.LiveMigrationFailed) || !strings.Contains(err.Error(), "not prepared the guest yet") {
			t.Fatalf("early refusal %d: %v", i, err)
		}
	}
	if err := src.Set(ctx, []Instance{moving(in, "dst", true, true)}); err == nil || !strings.Contains(err.Error(), computespec.LiveMigrationFailed) {
		t.Fatalf("refused %d times and still retried: %v", maxTooEarly+1, err)
	}
	mg.fail = nil
	if err := src.Set(ctx, []Instance{moving(in, "dst", true, true)}); err != nil {
		t.Fatal(err)
	}
	if src.status("a") != computespec.PowerMissing {
		t.Fatalf("source after the move: %s", src.status("a"))
	}
}

// releaseOrder is a Volumes that notes, at each Release, whether the
// instance's domain still ran then and which krbd volumes it kept.
type releaseOrder struct {
	countingVolumes
	hv    *fakeHV
	notes []string
}

func (v *releaseOrder) Release(_ context.Context, keep []computespec.Volume) error {
	var names []string
	for _, k := range keep {
		if k.KRBD != nil {
			names = append(names, k.Image)
		}
	}
	v.hv.mu.Lock()
	state := computespec.PowerMissing
	if d := v.hv.doms[DomainName(DefaultDomainPrefix, "a")]; d != nil {
		state = d.State
	}
	v.hv.mu.Unlock()
	v.notes = append(v.notes, fmt.Sprintf("%s keep %v", state, names))
	return nil
}

// TestColdMoveReleasesKrbdVolumes: a cold move's source lets go of the
// instance's krbd volumes (flushes their caches, unmaps them, and with
// that the image's lock goes) once it has stopped the domain, not when the
// move ends: the destination can claim them only then, and the move ends
// only once it has them. A live instance keeps them.
func TestColdMoveReleasesKrbdVolumes(t *testing.T) {
	src, _, _ := twoHosts(t)
	ctx := context.Background()
	vols := &releaseOrder{hv: src.hv.(*fakeHV)}
	src.cfg.Volumes = vols
	in := fakeInstance(t, "a")
	in.Spec.Volumes = []computespec.Volume{{Pool: "volumes", Image: "volume-k", KRBD: &computespec.KRBD{CacheMode: "writeback"}}}
	if err := src.Set(ctx, []Instance{in}); err != nil {
		t.Fatal(err)
	}
	if err := src.Set(ctx, []Instance{moving(in, "dst", true, false)}); err != nil {
		t.Fatal(err)
	}
	want := []string{"running keep [volume-k]", "stopped keep []"}
	if !slices.Equal(vols.notes, want) {
		t.Fatalf("releases %q, want %q", vols.notes, want)
	}
}
