package computespec

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestFitsAtOvercommitsByRatio(t *testing.T) {
	host := Capacity{VCPUs: 4, RAMMiB: 4096, DiskGiB: 100}
	r := Ratios{VCPU: 2.5, RAM: 1.5, Disk: 1}
	for _, tc := range []struct {
		name       string
		used, want Capacity
		field      string // "" fits
		msg        string
	}{
		{"empty host", Capacity{}, Capacity{VCPUs: 10, RAMMiB: 6144, DiskGiB: 100}, "", ""},
		{"vcpus at ratio", Capacity{VCPUs: 9}, Capacity{VCPUs: 1}, "", ""},
		{"vcpus past ratio", Capacity{VCPUs: 9}, Capacity{VCPUs: 2}, "flavor.vcpus", "2 is over the host's 1 left (4 vCPUs x ratio 2.5, 9 in use)"},
		{"ram past ratio", Capacity{RAMMiB: 6000}, Capacity{RAMMiB: 512}, "flavor.ram_mib", "512 MiB is over the host's 144 MiB left"},
		{"disk not overcommitted", Capacity{DiskGiB: 91}, Capacity{DiskGiB: 10}, "flavor.disk_gib", "10 GiB is over the host's 9 GiB left"},
		{"nothing asked of a full host", Capacity{VCPUs: 10, RAMMiB: 6144, DiskGiB: 100}, Capacity{}, "", ""},
	} {
		err := host.FitsAt(tc.used, tc.want, r)
		var fe *FieldError
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s: %v, want fits", tc.name, err)
		case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Msg, tc.msg)):
			t.Errorf("%s: %v, want %s: ...%s...", tc.name, err, tc.field, tc.msg)
		}
	}
}

func TestRatiosValidateAndDefault(t *testing.T) {
	if err := DefaultRatios().Validate("r"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Ratios{{VCPU: -1}, {RAM: math.NaN()}, {Disk: MaxRatio + 1}} {
		if err := bad.Validate("compute.allocation_ratios"); err == nil || !strings.HasPrefix(err.Error(), "compute.allocation_ratios.") {
			t.Errorf("%+v: %v, want an error naming the ratio", bad, err)
		}
	}
	if got := (Ratios{RAM: 1.5}).Or(DefaultRatios()); got != (Ratios{VCPU: 16, RAM: 1.5, Disk: 1}) {
		t.Errorf("Or: %+v", got)
	}
}
