package controller

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/rbd"
)

// slowFlatten is the real pool whose flatten takes a while, as a large
// volume's does.
type slowFlatten struct{ Pool }

func (s slowFlatten) Flatten(r rbd.Ref) error {
	time.Sleep(600 * time.Millisecond)
	return s.Pool.Flatten(r)
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestFlattenLogsProgress: a flatten that runs long logs progress lines
// (bytes copied of the size) while it runs, and a line when it is done.
func TestFlattenLogsProgress(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var logs syncBuf
	c, err := New(Config{Host: "h1", LeasePool: f.pool, LeaseTTL: 5 * time.Second, ProgressInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Connect: func() (Pool, error) {
			conn, err := rbd.Connect(f.cfg)
			if err != nil {
				return nil, err
			}
			return slowFlatten{conn}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.ceph.Close()
	})
	vt := res{"volumetype", "", "default", api.VolumeTypeSpec{Pool: f.pool}}
	v1 := res{"volume", "p", "v1", api.VolumeSpec{SizeGiB: 1}}
	s1 := res{"volumesnapshot", "p", "s1", api.VolumeSnapshotSpec{Volume: "v1"}}
	if err := c.Reconcile(ctx, planOf(t, 5, vt, v1, s1, res{"volume", "p", "v2", api.VolumeSpec{SizeGiB: 1, Snapshot: "s1"}})); err != nil {
		t.Fatal(err)
	}
	if err := c.Reconcile(ctx, planOf(t, 6, vt, v1, s1, res{"volume", "p", "v2", api.VolumeSpec{SizeGiB: 1, Snapshot: "s1", Flatten: true}})); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if n := strings.Count(out, "msg=flattening"); n < 2 || !strings.Contains(out, "size_bytes=1073741824") || !strings.Contains(out, "msg=flattened") {
		t.Fatalf("%d progress lines; logs:\n%s", n, out)
	}
	if st := f.status(t, "p", "v2"); st.Parent != nil {
		t.Fatalf("v2 still has parent %v", st.Parent)
	}
}
