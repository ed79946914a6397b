// Package hostinfo reads what this host offers: CPUs, memory and disk.
package hostinfo

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/strata-infra/strata/pkg/api"
)

// Capacity reads the host's vCPUs, RAM (from /proc/meminfo) and the disk of
// the filesystem holding dir, minus the reservations.
func Capacity(dir string, reserved api.Capacity) (api.Capacity, error) {
	ram, err := memTotalMiB("/proc/meminfo")
	if err != nil {
		return api.Capacity{}, err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return api.Capacity{}, fmt.Errorf("statfs %q: %w", dir, err)
	}
	disk := st.Blocks * uint64(st.Bsize) >> 30
	c := api.Capacity{VCPUs: runtime.NumCPU(), RAMMiB: int(ram), DiskGiB: int(disk)}
	return c.Sub(reserved), nil
}

func memTotalMiB(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: MemTotal %q: %w", path, fields[1], err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("%s: no MemTotal line", path)
}

// Arch is the host's machine architecture as images name it (uname -m).
func Arch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "386":
		return "i686"
	}
	return runtime.GOARCH
}
