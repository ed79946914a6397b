package hostinfo

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

func TestMemTotalMiB(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := memTotalMiB(write("ok", "MemFree:  1024 kB\nMemTotal:       24576000 kB\n"))
	if err != nil || got != 24000 {
		t.Errorf("memTotalMiB = %d, %v; want 24000", got, err)
	}
	if _, err := memTotalMiB(write("none", "MemFree: 1 kB\n")); err == nil {
		t.Error("a meminfo without MemTotal was read as a size")
	}
	if _, err := memTotalMiB(write("bad", "MemTotal: lots kB\n")); err == nil {
		t.Error("a MemTotal that is not a number was read as a size")
	}
}

// The reservations come off what the host has; the compute driver and
// gossip both measure through Capacity.
func TestCapacityTakesOffReserved(t *testing.T) {
	whole, err := Capacity(t.TempDir(), api.Capacity{})
	if err != nil {
		t.Fatal(err)
	}
	if whole.VCPUs != runtime.NumCPU() || whole.RAMMiB <= 0 {
		t.Fatalf("Capacity = %+v: want %d vCPUs and some RAM", whole, runtime.NumCPU())
	}
	got, err := Capacity(t.TempDir(), api.Capacity{RAMMiB: 512})
	if err != nil {
		t.Fatal(err)
	}
	if got.RAMMiB != whole.RAMMiB-512 || got.VCPUs != whole.VCPUs {
		t.Errorf("with 512 MiB reserved: %+v, whole %+v", got, whole)
	}
}
