package cachedvol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/storage/dmcache"
	"github.com/strata-infra/strata/agent/storage/krbd"
	"github.com/strata-infra/strata/internal/promtest"
	"github.com/strata-infra/strata/internal/testenv"
)

// fakeDM plays device-mapper: it keeps tables and makes up status lines;
// a writecache's dirty blocks drain by drain a status read once cleaner
// is on, or all at once on a suspend after flush_on_suspend.
type fakeDM struct {
	mu    sync.Mutex
	devs  map[string]*fakeDev
	log   []string
	drain int64
}

type fakeDev struct {
	table                              string
	dirty                              int64
	cleaner, flushOnSuspend, suspended bool
	failed                             bool
	held                               bool  // its writeback makes no headway (the origin hangs)
	open                               int   // openers (a domain's qemu)
	writes                             int64 // requests since the table was loaded
}

func newFakeDM() *fakeDM { return &fakeDM{devs: map[string]*fakeDev{}, drain: 100} }

func (f *fakeDM) record(s string) { f.log = append(f.log, s) }

func (f *fakeDM) Create(_ context.Context, name, table string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.devs[name] != nil {
		return fmt.Errorf("%s exists", name)
	}
	f.devs[name] = &fakeDev{table: table}
	f.record("create " + name + ": " + table)
	return nil
}

func (f *fakeDM) Reload(_ context.Context, name, table string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devs[name].table = table
	// A new table: the cleaner mode and the counters start again.
	f.devs[name].cleaner, f.devs[name].writes = false, 0
	f.record("reload " + name)
	return nil
}

func (f *fakeDM) Remove(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.devs[name]; d != nil && d.dirty > 0 {
		// Removing a writecache with dirty blocks would lose them: the
		// manager must never do it.
		return fmt.Errorf("test: remove %s with %d dirty blocks", name, d.dirty)
	}
	delete(f.devs, name)
	f.record("remove " + name)
	return nil
}

func (f *fakeDM) Status(_ context.Context, name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.devs[name]
	if d == nil {
		return "", dmcache.ErrNotFound
	}
	kind := strings.Fields(d.table)[2]
	switch kind {
	case "writecache":
		if d.cleaner && !d.failed && !d.held {
			d.dirty -= min(d.dirty, f.drain)
		}
		e := 0
		if d.failed {
			e = -5
		}
		return fmt.Sprintf("0 1000 writecache %d 10000 %d 0 0 0 %d 0 0 0 0 0 0 0 0", e, 10000-d.dirty, d.writes), nil
	case "cache":
		if d.failed {
			return "0 1000 cache Fail", nil
		}
		return "0 1000 cache 8 27/2048 128 3/1536 1 2 3 4 0 0 0 1 writethrough 2 migration_threshold 2048 smq 0 rw -", nil
	}
	return "0 1000 " + kind, nil
}

func (f *fakeDM) Message(_ context.Context, name, msg string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("message " + name + " " + msg)
	switch msg {
	case "flush":
		// dm-writecache's flush commits and writes every dirty block
		// back (writeback_all); a failed cache refuses it.
		if f.devs[name].failed {
			return fmt.Errorf("dmsetup message %s 0 flush: Input/output error", name)
		}
		f.devs[name].dirty = 0
	case "cleaner":
		f.devs[name].cleaner = true
	case "flush_on_suspend":
		f.devs[name].flushOnSuspend = true
	}
	return nil
}

func (f *fakeDM) Suspend(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.devs[name]
	if d.flushOnSuspend {
		d.dirty, d.flushOnSuspend = 0, false
	}
	d.suspended = true
	f.record("suspend " + name)
	return nil
}

func (f *fakeDM) OpenCount(_ context.Context, name string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := f.devs[name]
	if d == nil {
		return 0, dmcache.ErrNotFound
	}
	return d.open, nil
}

func (f *fakeDM) Resume(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devs[name].suspended = false
	f.record("resume " + name)
	return nil
}

// hold makes name's writeback make no headway (true) or go on again.
func (f *fakeDM) hold(name string, held bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devs[name].held = held
}

func (f *fakeDM) write(name string, blocks int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devs[name].dirty += blocks
	f.devs[name].writes++
}

type fakeMapper struct {
	mu     sync.Mutex
	mapped map[krbd.Image]krbd.Device
	next   int
}

func (m *fakeMapper) Map(_ context.Context, _ krbd.Auth, img krbd.Image, o krbd.Options) (krbd.Device, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d, ok := m.mapped[img]; ok {
		return d, nil
	}
	d := krbd.Device{ID: m.next, Path: fmt.Sprintf("/dev/rbd%d", m.next), Image: img}
	m.next++
	m.mapped[img] = d
	return d, nil
}

func (m *fakeMapper) Find(img krbd.Image) (krbd.Device, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.mapped[img]
	return d, ok, nil
}

func (m *fakeMapper) Unmap(_ context.Context, d krbd.Device, _ bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.mapped, d.Image)
	return nil
}

type fakeFast struct {
	mu     sync.Mutex
	zeroed []Slice
}

func (f *fakeFast) Path() string            { return "/dev/fast" }
func (f *fakeFast) Sectors() (int64, error) { return 1 << 21, nil } // 1 GiB
func (f *fakeFast) Zero(s Slice, _ int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.zeroed = append(f.zeroed, s)
	return nil
}

type rig struct {
	m    *Manager
	dm   *fakeDM
	krbd *fakeMapper
	fast *fakeFast
	// badData are the cache data devices whose reads fail; badAt, those
	// that fail from a byte offset on (partly failing).
	badData map[string]bool
	badAt   map[string]int64
	// reads are the stretches read of each data device.
	reads map[string][][2]int64
}

func newRig(t *testing.T) *rig {
	r := &rig{dm: newFakeDM(), krbd: &fakeMapper{mapped: map[krbd.Image]krbd.Device{}}, fast: &fakeFast{}, badData: map[string]bool{},
		badAt: map[string]int64{}, reads: map[string][][2]int64{}}
	r.m = r.manager(t.TempDir())
	return r
}

func (r *rig) manager(state string) *Manager {
	return &Manager{DM: r.dm, Mapper: r.krbd, Fast: r.fast, StateDir: state,
		Probe: func(path string, off, n int64) error {
			r.reads[path] = append(r.reads[path], [2]int64{off, n})
			if bad, ok := r.badAt[path]; r.badData[path] || ok && bad < off+n {
				return fmt.Errorf("read at byte %d: input/output error", max(off, bad))
			}
			return nil
		},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), ProgressEvery: time.Millisecond, FlushTimeout: 5 * time.Second}
}

func vol(name string, mode dmcache.Mode) Volume {
	return Volume{Name: name, Image: krbd.Image{Pool: "volumes", Name: name}, Mode: mode, CacheBytes: 64 << 20,
		Params: dmcache.Params{HighWatermark: 50, LowWatermark: 40, MaxAge: 30 * time.Second}}
}

// deviceSectors reads the origin's size; the fake's /dev/rbdN do not exist.
func init() {
	originSectors = func(string) (int64, error) { return 1 << 20, nil }
}

func TestAttachWriteback(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	p, err := r.m.Attach(ctx, vol("v1", dmcache.Writeback))
	if err != nil || p != "/dev/mapper/strata-v1" {
		t.Fatalf("Attach = %q, %v", p, err)
	}
	want := []string{
		"create strata-v1-origin: 0 1048576 linear /dev/rbd0 0",
		"create strata-v1-cdata: 0 131072 linear /dev/fast 0",
		"create strata-v1: 0 1048576 writecache s /dev/mapper/strata-v1-origin /dev/mapper/strata-v1-cdata 4096 6 high_watermark 50 low_watermark 40 max_age 30000",
	}
	if strings.Join(r.dm.log, "\n") != strings.Join(want, "\n") {
		t.Errorf("dm calls:\n%s\nwant:\n%s", strings.Join(r.dm.log, "\n"), strings.Join(want, "\n"))
	}
	if len(r.fast.zeroed) != 1 {
		t.Errorf("a fresh cache is zeroed once: %v", r.fast.zeroed)
	}
	recs, _ := r.m.Records()
	if len(recs) != 1 || recs[0].Phase != PhaseAttached || recs[0].Fresh {
		t.Errorf("record after attach: %+v", recs[0])
	}
	// Again: nothing changes.
	n := len(r.dm.log)
	if p2, err := r.m.Attach(ctx, vol("v1", dmcache.Writeback)); err != nil || p2 != p || len(r.dm.log) != n {
		t.Errorf("second Attach = %q, %v, dm calls %v", p2, err, r.dm.log[n:])
	}
}

func TestAttachWritethroughAndNone(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.m.Attach(ctx, vol("wt", dmcache.Writethrough)); err != nil {
		t.Fatal(err)
	}
	if got := r.dm.devs["strata-wt"].table; got != "0 1048576 cache /dev/mapper/strata-wt-cmeta /dev/mapper/strata-wt-cdata /dev/mapper/strata-wt-origin 128 1 writethrough smq 0" {
		t.Errorf("writethrough table %q", got)
	}
	if len(r.fast.zeroed) != 2 {
		t.Errorf("data and metadata of a fresh dm-cache are zeroed: %v", r.fast.zeroed)
	}
	p, err := r.m.Attach(ctx, vol("plain", dmcache.None))
	if err != nil || p != "/dev/mapper/strata-plain" {
		t.Errorf("mode none: %q, %v", p, err)
	}
	if d := r.dm.devs["strata-plain"]; d == nil || d.table != "0 1048576 linear /dev/mapper/strata-plain-origin 0" {
		t.Errorf("mode none: a linear device over the shim, got %+v", d)
	}
	rec, err := r.m.j().load("wt")
	if err != nil {
		t.Fatal(err)
	}
	data := []Slice{rec.Data, rec.Meta}
	if data[0].Offset < 0 || data[1].Offset < data[0].Offset+data[0].Sectors {
		t.Errorf("dm-cache slices overlap: %+v", data)
	}
	// No fast device: only none.
	r.m.Fast = nil
	if _, err := r.m.Attach(ctx, vol("x", dmcache.Writeback)); err == nil || !strings.Contains(err.Error(), "no cache device") {
		t.Errorf("writeback without a cache device: %v", err)
	}
	r.m.Fast = r.fast
	big := vol("big", dmcache.Writeback)
	big.CacheBytes = 2 << 30
	if _, err := r.m.Attach(ctx, big); err == nil || !strings.Contains(err.Error(), "no free") {
		t.Errorf("a cache larger than the device: %v", err)
	}
}

func TestDetachFlushesFirst(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.m.Attach(ctx, vol("v1", dmcache.Writeback)); err != nil {
		t.Fatal(err)
	}
	r.dm.write("strata-v1", 1000)
	if err := r.m.Detach(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	log := strings.Join(r.dm.log, "\n")
	if !strings.Contains(log, "message strata-v1 cleaner") || !strings.Contains(log, "message strata-v1 flush\nremove strata-v1") {
		t.Errorf("detach must clean, flush, then remove:\n%s", log)
	}
	if len(r.dm.devs) != 0 || len(r.krbd.mapped) != 0 {
		t.Errorf("left after detach: dm %v, krbd %v", r.dm.devs, r.krbd.mapped)
	}
	if recs, _ := r.m.Records(); len(recs) != 0 {
		t.Errorf("records after detach: %+v", recs)
	}
	// Again: nothing to do.
	if err := r.m.Detach(ctx, "v1"); err != nil {
		t.Error(err)
	}
}

func TestDetachInterruptedIsResumed(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.m.Attach(ctx, vol("v1", dmcache.Writeback)); err != nil {
		t.Fatal(err)
	}
	r.dm.write("strata-v1", 1000)
	r.dm.drain = 0 // the origin is unreachable: nothing drains
	r.m.FlushTimeout = 50 * time.Millisecond
	err := r.m.Detach(ctx, "v1")
	if err == nil || !strings.Contains(err.Error(), "1000 dirty blocks left") {
		t.Fatalf("detach that cannot flush: %v", err)
	}
	recs, _ := r.m.Records()
	if len(recs) != 1 || recs[0].Phase != PhaseDetaching || recs[0].LastDirty != 1000*4096 {
		t.Fatalf("record after a failed flush: %+v", recs)
	}
	if r.dm.devs["strata-v1"] == nil || len(r.krbd.mapped) != 1 {
		t.Fatal("a failed flush tore the volume down")
	}
	if _, err := r.m.Attach(ctx, vol("v1", dmcache.Writeback)); err == nil {
		t.Error("attach during a detach succeeded")
	}
	// A new agent: the origin is back.
	r.dm.drain = 300
	if err := r.manager(r.m.StateDir).Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if len(r.dm.devs) != 0 || len(r.krbd.mapped) != 0 {
		t.Errorf("left after the resumed detach: %v %v", r.dm.devs, r.krbd.mapped)
	}
}

func TestRecoverReassemblesWithoutInitialising(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	for _, v := range []Volume{vol("a", dmcache.Writeback), vol("b", dmcache.Writethrough), vol("c", dmcache.None)} {
		if _, err := r.m.Attach(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	tables := map[string]string{}
	for n, d := range r.dm.devs {
		tables[n] = d.table
	}
	zeroed := len(r.fast.zeroed)
	// A reboot: no device-mapper devices, no mappings.
	r.dm.devs = map[string]*fakeDev{}
	r.krbd.mapped = map[krbd.Image]krbd.Device{}
	r.krbd.next = 0
	if err := r.manager(r.m.StateDir).Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if len(r.fast.zeroed) != zeroed {
		t.Errorf("recover zeroed a cache that holds data: %v", r.fast.zeroed[zeroed:])
	}
	if len(r.dm.devs) != len(tables) || len(r.krbd.mapped) != 3 {
		t.Errorf("after recover: dm %d devices (want %d), %d mapped", len(r.dm.devs), len(tables), len(r.krbd.mapped))
	}
	for n, d := range r.dm.devs {
		if d.table != tables[n] {
			t.Errorf("%s reassembled as %q, was %q", n, d.table, tables[n])
		}
	}
}

func TestSnapshotHoldsWrites(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.m.Attach(ctx, vol("v1", dmcache.Writeback)); err != nil {
		t.Fatal(err)
	}
	r.dm.write("strata-v1", 500)
	took := false
	err := r.m.Snapshot(ctx, "v1", func(context.Context) error {
		d := r.dm.devs["strata-v1"]
		if !d.suspended || d.dirty != 0 {
			t.Errorf("snapshot taken with writes flowing (%v) or dirty blocks (%d)", !d.suspended, d.dirty)
		}
		if len(r.krbd.mapped) != 0 || !strings.HasSuffix(r.dm.devs["strata-v1-origin"].table, " error") {
			t.Errorf("snapshot taken with the image mapped (%v) or the shim on it (%q): the exclusive lock refuses librbd",
				r.krbd.mapped, r.dm.devs["strata-v1-origin"].table)
		}
		took = true
		return errors.New("ceph said no")
	})
	if !took || err == nil || err.Error() != "ceph said no" {
		t.Errorf("Snapshot = %v (taken %v)", err, took)
	}
	if r.dm.devs["strata-v1"].suspended {
		t.Error("the volume stays suspended after a failed snapshot")
	}
	if len(r.krbd.mapped) != 1 || r.dm.devs["strata-v1-origin"].table != "0 1048576 linear /dev/rbd1 0" {
		t.Errorf("after the snapshot the image is mapped again (%v) under the shim (%q)", r.krbd.mapped, r.dm.devs["strata-v1-origin"].table)
	}
	if recs, _ := r.m.Records(); recs[0].Snapshotting {
		t.Error("record still says snapshotting")
	}
	if !strings.Contains(strings.Join(r.dm.log, "\n"), "message strata-v1 flush_on_suspend\nsuspend strata-v1") {
		t.Errorf("snapshot must flush on suspend: %v", r.dm.log)
	}
}

// TestSnapshotInterruptedIsRecovered: an agent killed with the writes
// held and the image unmapped; the next one maps it and lets them go.
func TestSnapshotInterruptedIsRecovered(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.m.Attach(ctx, vol("v1", dmcache.Writethrough)); err != nil {
		t.Fatal(err)
	}
	rec, _ := r.m.j().load("v1")
	rec.Snapshotting = true
	r.m.j().save(rec)
	r.dm.devs["strata-v1"].suspended = true
	r.dm.devs["strata-v1-origin"].table = "0 1048576 error"
	r.krbd.mapped = map[krbd.Image]krbd.Device{}
	if err := r.manager(r.m.StateDir).Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if r.dm.devs["strata-v1"].suspended || len(r.krbd.mapped) != 1 || !strings.Contains(r.dm.devs["strata-v1-origin"].table, "linear /dev/rbd") {
		t.Errorf("after recover: suspended %v, mapped %v, shim %q", r.dm.devs["strata-v1"].suspended, r.krbd.mapped, r.dm.devs["strata-v1-origin"].table)
	}
}

func TestAllocate(t *testing.T) {
	used := []Slice{{Offset: 0, Sectors: 2048}, {Offset: 4096, Sectors: 2048}}
	s, err := allocate(10240, 2048, used)
	if err != nil || s.Offset != 2048 {
		t.Errorf("first fit into the hole: %+v %v", s, err)
	}
	s, err = allocate(10240, 3000, used)
	if err != nil || s.Offset != 6144 || s.Sectors != 4096 {
		t.Errorf("after the last, 1 MiB aligned: %+v %v", s, err)
	}
	if _, err := allocate(10240, 8192, used); err == nil {
		t.Error("allocated past the end")
	}
}

func TestStatusAndMetrics(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	for _, v := range []Volume{vol("wb", dmcache.Writeback), vol("wt", dmcache.Writethrough), vol("plain", dmcache.None)} {
		if _, err := r.m.Attach(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	r.dm.write("strata-wb", 7)
	sts, err := r.m.Statuses(ctx)
	if err != nil || len(sts) != 3 {
		t.Fatalf("Statuses = %+v, %v", sts, err)
	}
	if sts[1].Volume != "wb" || sts[1].DirtyBytes != 7*4096 || sts[1].Stats.Dirty != 7 || sts[1].Phase != PhaseAttached {
		t.Errorf("wb status: %+v", sts[1])
	}
	got := promtest.Values(t, r.m.Collector())
	for k, want := range map[string]float64{
		`strata_volume_cache_dirty_blocks{mode="writeback",volume="wb"}`:         7,
		`strata_volume_cache_dirty_bytes{mode="writeback",volume="wb"}`:          7 * 4096,
		`strata_volume_cache_blocks{mode="writeback",volume="wb"}`:               10000,
		`strata_volume_cache_read_hits_total{mode="writethrough",volume="wt"}`:   1,
		`strata_volume_cache_read_misses_total{mode="writethrough",volume="wt"}`: 2,
		`strata_volume_cache_writes_total{mode="writethrough",volume="wt"}`:      7,
		`strata_volume_cache_failed{mode="writethrough",volume="wt"}`:            0,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	for k := range got {
		if strings.Contains(k, `volume="plain"`) {
			t.Errorf("an uncached volume has cache metrics: %s", k)
		}
	}
}

// TestCheckKeepsDirtyBlocks: the checks of a healthy writeback cache
// leave its dirty blocks where they are (no "flush" message, which is
// dm-writecache's write-everything-back) and record their count.
func TestCheckKeepsDirtyBlocks(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.m.Attach(ctx, vol("wb", dmcache.Writeback)); err != nil {
		t.Fatal(err)
	}
	r.dm.write("strata-wb", 1024)
	for range 5 {
		if err := r.m.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if d := r.dm.devs["strata-wb"].dirty; d != 1024 {
		t.Errorf("%d dirty blocks after the checks, want the 1024 written", d)
	}
	if log := strings.Join(r.dm.log, "\n"); strings.Contains(log, "message strata-wb flush") {
		t.Errorf("a check wrote the cache back:\n%s", log)
	}
	if rec, _ := r.m.j().load("wb"); rec.LastDirty != 1024*4096 {
		t.Errorf("recorded %d dirty bytes, want %d", rec.LastDirty, 1024*4096)
	}
}

func TestCheckFailingCache(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	for _, v := range []Volume{vol("wb", dmcache.Writeback), vol("wt", dmcache.Writethrough)} {
		if _, err := r.m.Attach(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.m.Check(ctx); err != nil {
		t.Fatalf("healthy caches: %v", err)
	}
	r.dm.write("strata-wb", 9)
	r.dm.devs["strata-wb"].failed = true
	r.dm.devs["strata-wt"].failed = true
	err := r.m.Check(ctx)
	if err == nil || !strings.Contains(err.Error(), "volume wb: writeback cache failed") || strings.Contains(err.Error(), "volume wt") {
		t.Errorf("Check: %v", err)
	}
	if got := r.dm.devs["strata-wt"].table; got != "0 1048576 linear /dev/mapper/strata-wt-origin 0" {
		t.Errorf("failed writethrough cache not dropped: %q", got)
	}
	if r.dm.devs["strata-wt-cdata"] != nil || r.dm.devs["strata-wt-cmeta"] != nil {
		t.Error("the failed cache's slices stay")
	}
	if !strings.Contains(r.dm.devs["strata-wb"].table, "writecache") {
		t.Error("a failed writeback cache holding dirty data was taken away")
	}
	sts, _ := r.m.Statuses(ctx)
	if !sts[0].AtRisk || sts[0].DirtyBytes != 9*4096 || !sts[1].Degraded || sts[1].AtRisk {
		t.Errorf("statuses: %+v", sts)
	}
	// The writeback volume cannot be flushed: its detach fails and keeps
	// the record; the degraded one detaches.
	if err := r.m.Detach(ctx, "wb"); err == nil || !strings.Contains(err.Error(), "at risk") {
		t.Errorf("detach of a failed writeback cache: %v", err)
	}
	if err := r.m.Detach(ctx, "wt"); err != nil {
		t.Errorf("detach of a degraded volume: %v", err)
	}
	// A restart keeps the degraded volume uncached.
	if _, err := r.m.Attach(ctx, vol("wt", dmcache.Writethrough)); err != nil {
		t.Fatal(err)
	}
	rec, _ := r.m.j().load("wt")
	if rec.Degraded {
		t.Error("a new attach after the detach kept the old failure")
	}
}

// TestCheckFailingDataDevice: a cache data device that fails while the
// target's status stays clean (dm-cache's data device; its metadata still
// answers) is found by reading it: the writethrough volume falls back to
// the origin, the writeback one is failed with its bytes at risk.
func TestCheckFailingDataDevice(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	for _, v := range []Volume{vol("wb", dmcache.Writeback), vol("wt", dmcache.Writethrough)} {
		if _, err := r.m.Attach(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	r.dm.write("strata-wb", 3)
	r.badData["/dev/mapper/strata-wt-cdata"] = true
	r.badData["/dev/mapper/strata-wb-cdata"] = true
	err := r.m.Check(ctx)
	if err == nil || !strings.Contains(err.Error(), "volume wb: writeback cache failed (cache data device: read at byte 0: input/output error)") {
		t.Fatalf("Check: %v", err)
	}
	if got := r.dm.devs["strata-wt"].table; got != "0 1048576 linear /dev/mapper/strata-wt-origin 0" {
		t.Errorf("writethrough cache with a failed data device not dropped: %q", got)
	}
	sts, _ := r.m.Statuses(ctx)
	if !sts[0].AtRisk || sts[0].DirtyBytes != 3*4096 || !strings.Contains(sts[0].Stats.Error, "cache data device") || !sts[1].Degraded {
		t.Errorf("statuses: %+v", sts)
	}
}

// TestSnapshotWritesBackFirst: a snapshot of a writeback volume holding
// dirty blocks writes them back with the writes still flowing (the cleaner
// mode, with progress), holds the writes only then, and loads the volume's
// own table again afterwards so that new writes are cached again.
func TestSnapshotWritesBackFirst(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	if _, err := r.m.Attach(ctx, vol("v1", dmcache.Writeback)); err != nil {
		t.Fatal(err)
	}
	r.dm.write("strata-v1", 1000)
	var seen []Progress
	err := r.m.SnapshotWith(ctx, "v1", func(p Progress) { seen = append(seen, p) }, func(context.Context) error {
		if d := r.dm.devs["strata-v1"]; !d.suspended || d.dirty != 0 {
			t.Errorf("snapshot taken with writes flowing (%v) or dirty blocks (%d)", !d.suspended, d.dirty)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) < 2 || seen[0].First != 1000 || seen[len(seen)-1].Dirty != 0 {
		t.Errorf("progress of the write-back: %+v", seen)
	}
	log := strings.Join(r.dm.log, "\n")
	if !strings.Contains(log, "message strata-v1 cleaner\nmessage strata-v1 flush_on_suspend\nsuspend strata-v1") {
		t.Errorf("want the write-back before the writes are held: %v", r.dm.log)
	}
	if d := r.dm.devs["strata-v1"]; d.cleaner || d.suspended || !strings.Contains(d.table, "writecache") {
		t.Errorf("after the snapshot: cleaner %v, suspended %v, table %q: caching must be on again", d.cleaner, d.suspended, d.table)
	}
	if recs, _ := r.m.Records(); recs[0].IdleCleaning || recs[0].Snapshotting {
		t.Errorf("record after the snapshot: %+v", recs[0])
	}
}

// TestSnapshotWriteBackFailsAndCachesAgain: a write-back that misses its
// deadline fails the snapshot without holding the writes, and caching is
// on again.
func TestSnapshotWriteBackFailsAndCachesAgain(t *testing.T) {
	r := newRig(t)
	r.m.FlushTimeout = 20 * time.Millisecond
	r.dm.drain = 0 // the cache writes nothing back
	ctx := context.Background()
	if _, err := r.m.Attach(ctx, vol("v1", dmcache.Writeback)); err != nil {
		t.Fatal(err)
	}
	r.dm.write("strata-v1", 10)
	r.m.Probe = nil
	err := r.m.SnapshotWith(ctx, "v1", nil, func(context.Context) error {
		t.Error("snapshot taken after a failed write-back")
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "dirty blocks left") {
		t.Errorf("SnapshotWith = %v", err)
	}
	if strings.Contains(strings.Join(r.dm.log, "\n"), "suspend strata-v1\n") {
		t.Errorf("writes held after a failed write-back: %v", r.dm.log)
	}
	if d := r.dm.devs["strata-v1"]; d.cleaner {
		t.Error("the volume stays in the cleaner mode")
	}
}

// TestCheckFindsAPartlyFailingCache: a cache whose data device fails only
// past some offset, with a clean target status, is found by the checks'
// patrol reads (each reads the next stretch, from the start again after
// the end); then the rule of a failed cache applies: writethrough falls
// back uncached, writeback takes no more writes (its data device fails
// writes, passes reads) and says its dirty data at risk.
func TestCheckFindsAPartlyFailingCache(t *testing.T) {
	r := newRig(t)
	r.m.PatrolBytes = 16 << 20
	ctx := context.Background()
	for _, v := range []Volume{vol("wt", dmcache.Writethrough), vol("wb", dmcache.Writeback)} {
		if _, err := r.m.Attach(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	r.dm.write("strata-wb", 300)
	// 64 MiB caches; the last MiB fails.
	r.badAt["/dev/mapper/strata-wt-cdata"] = 63 << 20
	r.badAt["/dev/mapper/strata-wb-cdata"] = 63 << 20
	checks := 0
	for ; checks < 10; checks++ {
		if err := r.m.Check(ctx); err != nil {
			break
		}
	}
	if checks != 3 {
		t.Errorf("found after %d clean checks, want 3 (16 MiB of 64 read each)", checks)
	}
	if got := r.reads["/dev/mapper/strata-wt-cdata"]; len(got) != 4 || got[3] != [2]int64{48 << 20, 16 << 20} {
		t.Errorf("patrol reads: %v", got)
	}
	sts, _ := r.m.Statuses(ctx)
	for _, s := range sts {
		switch s.Volume {
		case "wt":
			if !s.Degraded || s.AtRisk || !strings.Contains(r.dm.devs["strata-wt"].table, "linear") {
				t.Errorf("writethrough after a partial failure: %+v, table %q", s, r.dm.devs["strata-wt"].table)
			}
		case "wb":
			if !s.AtRisk || s.DirtyBytes != 300*4096 || !strings.Contains(s.Stats.Error, "read at byte 66060288") {
				t.Errorf("writeback after a partial failure: %+v", s)
			}
			if tb := r.dm.devs["strata-wb-cdata"].table; !strings.Contains(tb, "flakey /dev/fast") || !strings.HasSuffix(tb, " 0 1 1 error_writes") {
				t.Errorf("the writeback cache's data device still takes writes: %q", tb)
			}
		}
	}
	// The next checks say so again, without reading or reloading again.
	reloads := strings.Count(strings.Join(r.dm.log, "\n"), "reload strata-wb-cdata")
	if err := r.m.Check(ctx); err == nil || !strings.Contains(err.Error(), "wb: writeback cache failed") {
		t.Errorf("check after: %v", err)
	}
	if n := strings.Count(strings.Join(r.dm.log, "\n"), "reload strata-wb-cdata"); n != reloads || reloads != 1 {
		t.Errorf("%d reloads of the failing cache's data device, then %d", reloads, n)
	}
	if err := r.m.Detach(ctx, "wb"); err == nil {
		t.Error("detach of a partly failed writeback cache with dirty blocks succeeded")
	}
}

// unmapLog is the fake mapper noting its unmaps in the dm log, so that a
// test sees the order of flush, teardown and unmap (which lets the
// image's exclusive lock go).
type unmapLog struct {
	*fakeMapper
	dm *fakeDM
}

func (u unmapLog) Unmap(ctx context.Context, d krbd.Device, force bool) error {
	u.dm.mu.Lock()
	u.dm.record("unmap " + d.Image.Name)
	u.dm.mu.Unlock()
	return u.fakeMapper.Unmap(ctx, d, force)
}

// TestDetachShowsFlushProgress: a detach's flush is in the volume's status
// while it runs ("N dirty blocks left (M when it began)"), and the cache
// is flushed to zero dirty blocks before it is torn down and the image
// unmapped.
func TestDetachShowsFlushProgress(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.m.Mapper = unmapLog{r.krbd, r.dm}
	if _, err := r.m.Attach(ctx, vol("v1", dmcache.Writeback)); err != nil {
		t.Fatal(err)
	}
	r.dm.write("strata-v1", 1000)
	var seen []Flush
	r.m.Changed = func() {
		sts, err := r.m.Statuses(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		for _, s := range sts {
			if s.Flush != nil {
				seen = append(seen, *s.Flush)
			}
		}
	}
	if err := r.m.Detach(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if len(seen) < 3 || seen[0].First != 1000 || seen[0].Dirty != 1000 || seen[len(seen)-1].Dirty >= 1000 {
		t.Fatalf("flush progress seen in the status: %+v", seen)
	}
	if msg := seen[1].Message(); !strings.Contains(msg, "dirty blocks left (1000 when it began)") {
		t.Errorf("progress line %q", msg)
	}
	log := strings.Join(r.dm.log, "\n")
	iFlush, iRemove, iUnmap := strings.Index(log, "message strata-v1 flush\n"), strings.Index(log, "remove strata-v1\n"), strings.Index(log, "unmap v1")
	if iFlush < 0 || iRemove < iFlush || iUnmap < iRemove {
		t.Errorf("want flush, then teardown, then unmap:\n%s", log)
	}
	if sts, _ := r.m.Statuses(ctx); len(sts) != 0 {
		t.Errorf("statuses after the detach: %+v", sts)
	}
}

// TestDetachDeadlineLeavesVolumeMapped: a flush that cannot finish by its
// deadline leaves the cache, its dirty blocks and the mapping (with the
// image's lock) in place, with an error naming the volume and the dirty
// count in the status; the error stays until FlushRetry is up.
func TestDetachDeadlineLeavesVolumeMapped(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	r.m.Mapper = unmapLog{r.krbd, r.dm}
	if _, err := r.m.Attach(ctx, vol("v1", dmcache.Writeback)); err != nil {
		t.Fatal(err)
	}
	r.dm.write("strata-v1", 1000)
	r.dm.drain = 0 // Ceph unreachable: nothing drains
	r.m.FlushTimeout, r.m.FlushRetry = 50*time.Millisecond, time.Hour
	err := r.m.Detach(ctx, "v1")
	if err == nil || !strings.Contains(err.Error(), "1000 dirty blocks left") {
		t.Fatalf("detach past its deadline: %v", err)
	}
	if r.dm.devs["strata-v1"] == nil || r.dm.devs["strata-v1"].dirty != 1000 || len(r.krbd.mapped) != 1 || strings.Contains(strings.Join(r.dm.log, "\n"), "unmap") {
		t.Fatalf("a flush past its deadline tore the volume down: %v %v", r.dm.log, r.krbd.mapped)
	}
	sts, _ := r.m.Statuses(ctx)
	if len(sts) != 1 || sts[0].Flush == nil || !strings.Contains(sts[0].Flush.Error, "detach v1:") ||
		!strings.Contains(sts[0].Flush.Error, "1000 dirty blocks left") || !strings.Contains(sts[0].Flush.Error, "deadline") {
		t.Fatalf("status after the deadline: %+v", sts)
	}
	// Before FlushRetry: the same error, no new flush.
	n := len(r.dm.log)
	if err := r.m.Detach(ctx, "v1"); err == nil || err.Error() != sts[0].Flush.Error || len(r.dm.log) != n {
		t.Errorf("detach again at once: %v (dm calls %v)", err, r.dm.log[n:])
	}
	// Then it flushes again, and Ceph is back.
	r.m.FlushRetry, r.m.FlushTimeout, r.dm.drain = time.Nanosecond, 5*time.Second, 300
	if err := r.m.Detach(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if len(r.dm.devs) != 0 || len(r.krbd.mapped) != 0 {
		t.Errorf("left after the detach: %v %v", r.dm.devs, r.krbd.mapped)
	}
}

// TestDetachDeadlineFromVolumeType: the volume type's flush bound, kept in
// the record at attach (the volume may have left the plan by its detach),
// wins over the manager's.
func TestDetachDeadlineFromVolumeType(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	v := vol("v1", dmcache.Writeback)
	if _, err := r.m.Attach(ctx, v); err != nil {
		t.Fatal(err)
	}
	v.FlushTimeout = 50 * time.Millisecond // the type changed since
	if _, err := r.m.Attach(ctx, v); err != nil {
		t.Fatal(err)
	}
	r.dm.write("strata-v1", 1000)
	r.dm.drain = 0
	r.m.FlushTimeout = time.Hour
	// The error names the deadline the flush ran under: the type's.
	if err := r.m.Detach(ctx, "v1"); err == nil || !strings.Contains(err.Error(), "deadline (50ms)") {
		t.Fatalf("detach past the type's deadline: %v", err)
	}
}

// TestFlushHoldsUpNoOtherVolume: a detach whose flush makes no headway
// (its origin hangs) holds only its own volume: meanwhile another volume
// attaches, is checked, idle-cleaned, snapshotted and detached, and an
// attach of the flushing volume is turned away at once, naming the
// flush, instead of waiting for it. The flush ends when the origin is back.
func TestFlushHoldsUpNoOtherVolume(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.m.FlushTimeout = time.Hour
	if _, err := r.m.Attach(ctx, vol("v1", dmcache.Writeback)); err != nil {
		t.Fatal(err)
	}
	r.dm.write("strata-v1", 1000)
	r.dm.hold("strata-v1", true)
	detached := make(chan error, 1)
	go func() { detached <- r.m.Detach(ctx, "v1") }()
	testenv.WaitTrue(t, 10*time.Second, "v1's flush under way", func() bool {
		_, ok := r.m.flushOf("v1")
		return ok
	})

	if _, err := r.m.Attach(ctx, vol("v2", dmcache.Writeback)); err != nil {
		t.Fatalf("attach beside a flush: %v", err)
	}
	r.dm.write("strata-v2", 10)
	if err := r.m.Check(ctx); err != nil {
		t.Fatalf("check beside a flush: %v", err)
	}
	if err := r.m.CleanIdle(ctx, time.Now(), time.Hour); err != nil {
		t.Fatalf("idle cleaning beside a flush: %v", err)
	}
	took := false
	if err := r.m.Snapshot(ctx, "v2", func(context.Context) error { took = true; return nil }); err != nil || !took {
		t.Fatalf("snapshot beside a flush: %v (taken %v)", err, took)
	}
	_, err := r.m.Attach(ctx, vol("v1", dmcache.Writeback))
	var busy *busyError
	if !errors.As(err, &busy) || !strings.Contains(err.Error(), "volume v1 is busy with a detach") {
		t.Fatalf("attach of the flushing volume: %v", err)
	}
	if err := r.m.Detach(ctx, "v2"); err != nil {
		t.Fatalf("detach beside a flush: %v", err)
	}
	select {
	case err := <-detached:
		t.Fatalf("v1's detach ended while its flush could make no headway: %v", err)
	default:
	}

	r.dm.hold("strata-v1", false)
	if err := <-detached; err != nil {
		t.Fatal(err)
	}
	if recs, _ := r.m.Records(); len(recs) != 0 {
		t.Errorf("records left: %+v", recs)
	}
	r.m.lmu.Lock()
	defer r.m.lmu.Unlock()
	if len(r.m.locks) != 0 {
		t.Errorf("locks left: %+v", r.m.locks)
	}
}

// TestDrainForDetach: before the unplug, a writeback volume's cache is
// written back while the domain still has the disk (cleaner mode), with
// its progress in the volume's status; the volume stays attached with
// its cache, and the flush after the unplug has nothing left. A
// write-back that cannot finish by its deadline fails with the disk still
// the domain's, is kept as the status until FlushRetry is up, and does not
// hold up a detach once the domain is gone. A detach called off (the
// volume attached again) drops the write-back from the status.
func TestDrainForDetach(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	if _, err := r.m.Attach(ctx, vol("v1", dmcache.Writeback)); err != nil {
		t.Fatal(err)
	}
	r.dm.write("strata-v1", 1000)
	var seen []Flush
	r.m.Changed = func() {
		sts, _ := r.m.Statuses(ctx)
		for _, s := range sts {
			if s.Flush != nil {
				seen = append(seen, *s.Flush)
			}
		}
	}
	if err := r.m.DrainForDetach(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if len(seen) < 2 || !seen[0].BeforeUnplug || seen[0].First != 1000 || seen[len(seen)-1].Dirty != 0 ||
		!strings.Contains(seen[1].Message(), "before the disk is unplugged") {
		t.Fatalf("write-back before the unplug, as the status showed it: %+v", seen)
	}
	rec, _ := r.m.j().load("v1")
	if d := r.dm.devs["strata-v1"]; d == nil || !d.cleaner || d.dirty != 0 || rec.Phase != PhaseAttached || !rec.IdleCleaning || len(r.krbd.mapped) != 1 {
		t.Fatalf("after the write-back the volume is %+v, record %+v", d, rec)
	}
	// Called off: attached again, the write-back is no longer its status.
	if _, err := r.m.Attach(ctx, vol("v1", dmcache.Writeback)); err != nil {
		t.Fatal(err)
	}
	if sts, _ := r.m.Statuses(ctx); len(sts) != 1 || sts[0].Flush != nil {
		t.Fatalf("status after the detach was called off: %+v", sts)
	}

	// Ceph unreachable: nothing drains.
	r.dm.write("strata-v1", 500)
	r.dm.hold("strata-v1", true)
	// Past writeBack's stall window (2 s): no headway at all is no tail.
	r.m.FlushTimeout, r.m.FlushRetry = 3*time.Second, time.Hour
	err := r.m.DrainForDetach(ctx, "v1")
	if err == nil || !strings.Contains(err.Error(), "the disk stays with its domain") || !strings.Contains(err.Error(), "500 dirty blocks left") {
		t.Fatalf("write-back past its deadline: %v", err)
	}
	if sts, _ := r.m.Statuses(ctx); len(sts) != 1 || sts[0].Flush == nil || sts[0].Flush.Error != err.Error() {
		t.Fatalf("status after the failed write-back: %+v", sts)
	}
	n := len(r.dm.log)
	if again := r.m.DrainForDetach(ctx, "v1"); again == nil || again.Error() != err.Error() || len(r.dm.log) != n {
		t.Errorf("write-back again at once: %v (dm calls %v)", again, r.dm.log[n:])
	}
	// The instance is deleted meanwhile and Ceph is back: the detach is
	// not turned away by the write-back's failure.
	r.dm.hold("strata-v1", false)
	r.m.FlushTimeout = 5 * time.Second
	if err := r.m.Detach(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
	if len(r.dm.devs) != 0 || len(r.krbd.mapped) != 0 {
		t.Errorf("left after the detach: %v %v", r.dm.devs, r.krbd.mapped)
	}
}

// TestDetachWaitsForTheDomain: a volume whose device a domain still has
// open (an unplug the guest has not acknowledged) is not detached: the
// detach is refused, naming the device, with nothing changed, and goes
// on once the domain has let go.
func TestDetachWaitsForTheDomain(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	if _, err := r.m.Attach(ctx, vol("v1", dmcache.Writeback)); err != nil {
		t.Fatal(err)
	}
	r.dm.write("strata-v1", 100)
	r.dm.devs["strata-v1"].open = 1
	n := len(r.dm.log)
	if err := r.m.Detach(ctx, "v1"); err == nil || !strings.Contains(err.Error(), "/dev/mapper/strata-v1 is still open") {
		t.Fatalf("detach of an open volume: %v", err)
	}
	if rec, _ := r.m.j().load("v1"); rec.Phase != PhaseAttached || len(r.dm.log) != n {
		t.Fatalf("a refused detach changed the volume: %+v, dm calls %v", rec, r.dm.log[n:])
	}
	r.dm.devs["strata-v1"].open = 0
	if err := r.m.Detach(ctx, "v1"); err != nil {
		t.Fatal(err)
	}
}
