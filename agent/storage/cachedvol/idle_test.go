package cachedvol

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/storage/dmcache"
)

// TestCleanIdle: a writeback volume without requests for the idle time
// while it holds dirty blocks is put in cleaner mode, which writes them
// all back; its first request afterwards reloads its own table (caching
// on again); a busy volume, a clean one and a writethrough one are left
// alone, and a restart of the agent keeps the state in the record.
func TestCleanIdle(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	for _, v := range []Volume{vol("idle", dmcache.Writeback), vol("busy", dmcache.Writeback), vol("clean", dmcache.Writeback), vol("wt", dmcache.Writethrough)} {
		if _, err := r.m.Attach(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	r.dm.write("strata-idle", 500)
	r.dm.write("strata-busy", 500)
	t0 := time.Unix(1000, 0)
	step := func(at time.Duration) {
		t.Helper()
		if err := r.m.CleanIdle(ctx, t0.Add(at), 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	cleaner := func() []string {
		var out []string
		for _, l := range r.dm.log {
			if strings.HasSuffix(l, " cleaner") || strings.HasPrefix(l, "reload strata-") {
				out = append(out, l)
			}
		}
		return out
	}
	step(0)
	r.dm.write("strata-busy", 1)
	step(20 * time.Second)
	r.dm.write("strata-busy", 1)
	step(40 * time.Second)
	if got := cleaner(); len(got) != 1 || got[0] != "message strata-idle cleaner" {
		t.Fatalf("after 40 s: %v, want only the idle volume cleaned", got)
	}
	if st, _ := r.m.Stats(ctx, "idle"); st.Dirty != 500-100 {
		t.Fatalf("idle volume after one read of its status: %d dirty", st.Dirty)
	}
	recs, _ := r.m.Records()
	for _, rec := range recs {
		if rec.IdleCleaning != (rec.Volume == "idle") {
			t.Fatalf("record %s: idle cleaning %v", rec.Volume, rec.IdleCleaning)
		}
	}
	// Cleaned to zero; calling again changes nothing.
	for range 5 {
		r.m.Stats(ctx, "idle")
	}
	step(50 * time.Second)
	if st, _ := r.m.Stats(ctx, "idle"); st.Dirty != 0 || len(cleaner()) != 1 {
		t.Fatalf("idle volume: %d dirty, calls %v", st.Dirty, cleaner())
	}
	// An agent restart, then a write: caching goes back on.
	r.m = r.manager(r.m.StateDir)
	step(60 * time.Second)
	r.dm.write("strata-idle", 10)
	step(70 * time.Second)
	if got := cleaner(); len(got) != 2 || got[1] != "reload strata-idle" {
		t.Fatalf("after a write to the cleaned volume: %v, want its table reloaded", got)
	}
	if d := r.dm.devs["strata-idle"]; d.cleaner || !strings.Contains(d.table, "writecache") {
		t.Fatalf("reloaded table %q, cleaner %v", d.table, d.cleaner)
	}
	recs, _ = r.m.Records()
	for _, rec := range recs {
		if rec.IdleCleaning {
			t.Fatalf("record %s still says idle cleaning", rec.Volume)
		}
	}
}
