package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-infra/strata/internal/cephtest"
	"github.com/strata-infra/strata/internal/testenv"
)

// TestMain removes the strata-rbd TestImagesImport builds.
func TestMain(m *testing.M) {
	code := m.Run()
	cephtest.RemoveHelper()
	os.Exit(code)
}

// TestImagesImport imports a qcow2 file into a real Ceph with `stratactl
// images import`, finds it registered and readable, and refuses a missing
// and a malformed file with nothing made. The package's only Ceph test: it
// starts its own cluster.
func TestImagesImport(t *testing.T) {
	if why := cephtest.Available(); why != "" {
		testenv.Missing(t, "Ceph", why)
	}
	ctx := context.Background()
	cl, err := cephtest.Start(ctx, cephtest.Options{Dir: t.TempDir(), Name: fmt.Sprintf("s13i%d", os.Getpid()), Pools: []string{"images"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Stop)
	keyring, err := cl.CreateUser(ctx, "client.strata", "mon", "profile rbd", "osd", "profile rbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("STRATA_CEPH_MON_HOST", cl.MonHost())
	t.Setenv("STRATA_CEPH_KEYRING", keyring)
	c := newCLI(t)

	dir := t.TempDir()
	raw, qcow := filepath.Join(dir, "d.raw"), filepath.Join(dir, "d.qcow2")
	os.WriteFile(raw, []byte(strings.Repeat("strata", 1000)), 0o644)
	os.Truncate(raw, 6<<20)
	if out, err := exec.Command("qemu-img", "convert", "-O", "qcow2", raw, qcow).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	c.must("images", "import", "tiny", qcow)
	if out := c.must("images", "list"); !strings.Contains(out, "images") || !strings.Contains(out, fmt.Sprint(6<<20)) {
		t.Fatalf("images list:\n%s", out)
	}
	out := filepath.Join(dir, "back")
	if _, err := cl.RBD(ctx, "export", "images/image-tiny@base", out); err != nil {
		t.Fatal(err)
	}
	if a, b := readAll(t, raw), readAll(t, out); a != b {
		t.Fatal("the imported image differs from the file")
	}
	bad := filepath.Join(dir, "bad.qcow2")
	os.WriteFile(bad, []byte("QFI\xfbnot really"), 0o644)
	for _, args := range [][]string{
		{"images", "import", "missing", filepath.Join(dir, "nope")},
		{"images", "import", "bad", bad, "--format", "qcow2"},
		{"images", "import", "tiny", raw}, // the name is taken
	} {
		if o, err := c.run(args...); err == nil {
			t.Errorf("stratactl %v succeeded:\n%s", args, o)
		}
	}
	if ls, _ := cl.RBD(ctx, "ls", "images"); strings.TrimSpace(string(ls)) != "image-tiny" {
		t.Fatalf("refused imports left images behind: %q", ls)
	}
}

func readAll(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
