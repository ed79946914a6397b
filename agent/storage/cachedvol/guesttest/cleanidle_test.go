package guesttest

import (
	"fmt"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
)

// idleBytes is what TestGuestIdleCleaning writes before the volume rests.
const idleBytes = 4 << 20

// TestGuestIdleCleaning: a writeback volume holding dirty blocks (the
// watermarks, 95/90, would keep them) that sees no request for the idle
// time has its cache written back to zero dirty blocks by CleanIdle, with
// no detach; its next write reloads its table and is cached again. The
// host reads the raw image back (TestCachedVolumesInGuest).
func TestGuestIdleCleaning(t *testing.T) {
	requireGuest(t)
	guestSetup(t)
	ctx := t.Context()
	m := manager(t.TempDir(), "/dev/ram0")
	v := writeback("idle", image(t, "idle"))
	v.CacheBytes = 32 << 20
	dev, err := m.Attach(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, dev, Pattern(40, idleBytes))
	before := dirty(t, m, v.Name)
	if before.Dirty == 0 {
		t.Fatalf("nothing dirty after a write: %+v", before)
	}
	const idleAfter = 2 * time.Second
	start := time.Now()
	testenv.WaitFor(t, testenv.Scale(3*time.Minute), "idle cleaning to write the cache back", func() error {
		if err := m.CleanIdle(ctx, time.Now(), idleAfter); err != nil {
			return err
		}
		if st := dirty(t, m, v.Name); st.Dirty != 0 {
			return fmt.Errorf("%d of %d blocks dirty", st.Dirty, before.Dirty)
		}
		return nil
	})
	t.Logf("idle for %s: %d dirty blocks written back, %s after the last write", idleAfter, before.Dirty, time.Since(start).Round(time.Millisecond))
	if recs, _ := m.Records(); len(recs) != 1 || !recs[0].IdleCleaning {
		t.Fatalf("record while idle cleaning: %+v", recs)
	}

	// Busy again: the next write is seen, caching comes back on, and
	// new writes are cached (dirty) again.
	second := Pattern(41, 1<<20)
	writeAll(t, dev, second)
	if err := m.CleanIdle(ctx, time.Now(), idleAfter); err != nil {
		t.Fatal(err)
	}
	if recs, _ := m.Records(); len(recs) != 1 || recs[0].IdleCleaning {
		t.Fatalf("record after the volume got busy: %+v", recs)
	}
	writeAll(t, dev, second)
	if st := dirty(t, m, v.Name); st.Dirty == 0 {
		t.Fatalf("writes after idle cleaning ended are not cached: %+v", st)
	}
	if err := m.Detach(ctx, v.Name); err != nil {
		t.Fatal(err)
	}
	checkGone(t, m, v.Name, image(t, "idle"))
}

// idleImage is what the idle test leaves in its image.
func idleImage() []byte {
	b := Pattern(40, idleBytes)
	copy(b, Pattern(41, 1<<20))
	return b
}
