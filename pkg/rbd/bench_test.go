package rbd_test

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/cephtest"
	"github.com/strata-infra/strata/pkg/rbd"
)

func benchConn(b *testing.B) (*rbd.Conn, *cephtest.Cluster) {
	b.Helper()
	cl := cephtest.Require(b)
	if !rbd.Supported() {
		b.Skip(rbd.ErrNoCeph)
	}
	keyring, err := cl.CreateUser(context.Background(), "client.strata", "mon", "profile rbd", "osd", "profile rbd", "mgr", "profile rbd")
	if err != nil {
		b.Fatal(err)
	}
	c, err := rbd.Connect(rbd.Config{MonHost: cl.MonHost(), User: "strata", Keyring: keyring})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c, cl
}

// dataFile writes size bytes of random data (nothing for thin
// provisioning to skip) to a file in dir.
func dataFile(b *testing.B, dir string, size int64) string {
	b.Helper()
	p := filepath.Join(dir, "data.raw")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkVolumeFromImage: a volume made from a 1 GiB image as a
// copy-on-write clone (what Strata does) against a full copy of the same
// image, in the same process. ratio = copy time / clone time (target >= 10).
func BenchmarkVolumeFromImage(b *testing.B) {
	c, _ := benchConn(b)
	ctx := context.Background()
	img := rbd.Ref{Pool: "images", Image: name("bench-img")}
	b.Cleanup(func() { c.Remove(img, "", true) })
	if _, err := c.ImportFile(ctx, dataFile(b, b.TempDir(), 1<<30), "raw", img, "bench", b.TempDir(), nil); err != nil {
		b.Fatal(err)
	}
	base := rbd.Ref{Pool: img.Pool, Image: img.Image, Snap: rbd.BaseSnap}
	var clone, copy time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst := rbd.Ref{Pool: "volumes", Image: name("bench-clone")}
		t0 := time.Now()
		if err := c.Clone(base, dst, "bench"); err != nil {
			b.Fatal(err)
		}
		clone += time.Since(t0)
		b.StopTimer()
		full := rbd.Ref{Pool: "volumes", Image: name("bench-copy")}
		t0 = time.Now()
		if err := c.Copy(base, full, "bench"); err != nil {
			b.Fatal(err)
		}
		copy += time.Since(t0)
		if err := c.Remove(dst, "", false); err != nil {
			b.Fatal(err)
		}
		if err := c.Remove(full, "", false); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(clone.Milliseconds())/float64(b.N), "clone-ms")
	b.ReportMetric(float64(copy.Milliseconds())/float64(b.N), "copy-ms")
	b.ReportMetric(copy.Seconds()/clone.Seconds(), "copy/clone")
}

// BenchmarkImageImport: importing a 512 MiB raw file with the driver
// against `rbd import` of the same file, in the same process. ratio =
// driver throughput / rbd import throughput (target >= 0.9).
func BenchmarkImageImport(b *testing.B) {
	c, cl := benchConn(b)
	ctx := context.Background()
	const size = 512 << 20
	src := dataFile(b, b.TempDir(), size)
	var ours, theirs time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst := rbd.Ref{Pool: "images", Image: name("bench-import")}
		t0 := time.Now()
		if _, err := c.ImportFile(ctx, src, "raw", dst, "bench", b.TempDir(), nil); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(t0)
		b.StopTimer()
		ref := rbd.Ref{Pool: "images", Image: name("bench-rbdimport")}
		t0 = time.Now()
		if _, err := cl.RBD(ctx, "import", "--no-progress", src, ref.String()); err != nil {
			b.Fatal(err)
		}
		if _, err := cl.RBD(ctx, "snap", "create", ref.String()+"@base"); err != nil {
			b.Fatal(err)
		}
		theirs += time.Since(t0)
		c.Remove(dst, "", false)
		c.Remove(ref, "", false)
		b.StartTimer()
	}
	mib := float64(size) / (1 << 20) * float64(b.N)
	b.ReportMetric(mib/ours.Seconds(), "MiB/s")
	b.ReportMetric(mib/theirs.Seconds(), "rbd-import-MiB/s")
	b.ReportMetric(theirs.Seconds()/ours.Seconds(), "vs-rbd-import")
}
