package compute

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/strata-infra/strata/pkg/computespec"
	"golang.org/x/sys/unix"
)

// HostCapacity measures the host: online vCPUs, MemTotal and the size of
// the file system holding stateDir.
func HostCapacity(stateDir string) (computespec.Capacity, error) {
	c := computespec.Capacity{VCPUs: runtime.NumCPU()}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return c, fmt.Errorf("host capacity: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				return c, fmt.Errorf("host capacity: MemTotal %q: %w", rest, err)
			}
			c.RAMMiB = kib / 1024
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(stateDir, &st); err != nil {
		return c, fmt.Errorf("host capacity: statfs %q: %w", stateDir, err)
	}
	c.DiskGiB = int(uint64(st.Blocks) * uint64(st.Bsize) >> 30)
	return c, nil
}
