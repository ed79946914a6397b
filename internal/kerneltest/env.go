package kerneltest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// ErrUnavailable marks a host that cannot run the guest at all: qemu or
// Debian's kernel package is missing. Tests skip on it; anything else that
// goes wrong is a failure.
var ErrUnavailable = errors.New("kernel test guest unavailable")

const (
	qemuBinary = "qemu-system-x86_64"
	qbootROM   = "/usr/share/qemu/qboot.rom"
)

// InGuest reports whether this process runs inside the kernel-test guest.
func InGuest() bool { return os.Getenv(GuestEnv) == "1" }

// host is what the harness found on this machine.
type host struct {
	qemu    string // path of qemu-system-x86_64
	kernel  string // kernel version, e.g. 6.1.0-56-amd64
	vmlinuz string // /boot/vmlinuz-<kernel>
}

// probeHost finds qemu and a Debian kernel. The version is the newest one
// that has both /boot/vmlinuz-V and /lib/modules/V, or $STRATA_KERNEL_VERSION.
func probeHost() (host, error) {
	qemu, err := exec.LookPath(qemuBinary)
	if err != nil {
		return host{}, fmt.Errorf("%w: %s not found (bash testdata/kernel/deps.sh installs qemu-system-x86)", ErrUnavailable, qemuBinary)
	}
	if _, err := os.Stat(qbootROM); err != nil {
		return host{}, fmt.Errorf("%w: %s missing (install qemu-system-data): %w", ErrUnavailable, qbootROM, err)
	}
	ver := os.Getenv("STRATA_KERNEL_VERSION")
	if ver == "" {
		ver, err = newestKernel("/boot", "/lib/modules")
		if err != nil {
			return host{}, err
		}
	}
	vmlinuz := "/boot/vmlinuz-" + ver
	for _, p := range []string{vmlinuz, filepath.Join("/lib/modules", ver, "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			return host{}, fmt.Errorf("%w: kernel %s: %w (bash testdata/kernel/deps.sh installs linux-image-amd64)", ErrUnavailable, ver, err)
		}
	}
	return host{qemu: qemu, kernel: ver, vmlinuz: vmlinuz}, nil
}

// newestKernel picks the highest version V with bootDir/vmlinuz-V and
// modDir/V/modules.dep.
func newestKernel(bootDir, modDir string) (string, error) {
	matches, _ := filepath.Glob(filepath.Join(bootDir, "vmlinuz-*"))
	var vers []string
	for _, m := range matches {
		v := strings.TrimPrefix(filepath.Base(m), "vmlinuz-")
		if _, err := os.Stat(filepath.Join(modDir, v, "modules.dep")); err == nil {
			vers = append(vers, v)
		}
	}
	if len(vers) == 0 {
		return "", fmt.Errorf("%w: no %s/vmlinuz-* with modules in %s (bash testdata/kernel/deps.sh installs linux-image-amd64)", ErrUnavailable, bootDir, modDir)
	}
	sort.Slice(vers, func(i, j int) bool { return versionLess(vers[i], vers[j]) })
	return vers[len(vers)-1], nil
}

// versionLess compares kernel versions field by field, numerically where
// both fields are numbers.
func versionLess(a, b string) bool {
	split := func(s string) []string {
		return strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' })
	}
	fa, fb := split(a), split(b)
	for i := 0; i < len(fa) && i < len(fb); i++ {
		if fa[i] == fb[i] {
			continue
		}
		var na, nb int
		_, ea := fmt.Sscanf(fa[i], "%d", &na)
		_, eb := fmt.Sscanf(fb[i], "%d", &nb)
		if ea == nil && eb == nil && na != nb {
			return na < nb
		}
		return fa[i] < fb[i]
	}
	return len(fa) < len(fb)
}

// repoRoot walks up from dir to the directory holding go.mod and
// testdata/kernel.
func repoRoot(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(d, "go.mod")) && fileExists(filepath.Join(d, "testdata", "kernel", "build-initramfs.sh")) {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod with testdata/kernel above %s", dir)
		}
		d = parent
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
