package kerneltest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
)

// Harness builds and boots kernel-test guests on this host.
type Harness struct {
	host    host
	repo    string // module root, holding testdata/kernel
	scripts string // <repo>/testdata/kernel
	cache   string // cache directory
	// Logf, when set, receives progress lines (builds, boots, timings).
	Logf func(format string, args ...any)
}

// New finds qemu, the kernel and the repository from dir (any directory
// inside the module). An error wrapping ErrUnavailable means the host has
// no qemu or no kernel package.
func New(dir string) (*Harness, error) {
	h, err := probeHost()
	if err != nil {
		return nil, err
	}
	repo, err := repoRoot(dir)
	if err != nil {
		return nil, err
	}
	return &Harness{
		host:    h,
		repo:    repo,
		scripts: filepath.Join(repo, "testdata", "kernel"),
		cache:   cacheDir(repo),
	}, nil
}

// KernelVersion is the version of the kernel the guest boots.
func (h *Harness) KernelVersion() string { return h.host.kernel }

func (h *Harness) logf(format string, args ...any) {
	if h.Logf != nil {
		h.Logf(format, args...)
	}
}

// buildTimeout bounds one build step (the kernel, the base initramfs, a
// test binary), times STRATA_TIMEOUT_FACTOR.
var buildTimeout = testenv.Scale(5 * time.Minute)

// kernelPath is the cache path of the uncompressed vmlinux, keyed by the
// kernel version, build-kernel.sh and the identity of /boot/vmlinuz-V.
func (h *Harness) kernelPath() (string, error) {
	k, sum := newKey()
	k.str("kernel", h.host.kernel)
	if err := k.file(filepath.Join(h.scripts, "build-kernel.sh")); err != nil {
		return "", err
	}
	if err := k.stat(h.host.vmlinuz); err != nil {
		return "", err
	}
	return filepath.Join(h.cache, h.host.kernel, "vmlinux-"+sum()), nil
}

// kernel returns the cached uncompressed vmlinux, extracting it first if
// needed.
func (h *Harness) kernel(ctx context.Context) (string, error) {
	out, err := h.kernelPath()
	if err != nil {
		return "", err
	}
	err = buildOnce(ctx, out, func(ctx context.Context) error {
		start := time.Now()
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		err := runScript(ctx, buildTimeout, filepath.Join(h.scripts, "build-kernel.sh"), h.host.kernel, out)
		h.logf("kerneltest: extracted vmlinux %s in %s", h.host.kernel, time.Since(start).Round(time.Millisecond))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("build vmlinux %s: %w", h.host.kernel, err)
	}
	return out, nil
}

// baseInputs is what the base initramfs is built from, resolved.
type baseInputs struct {
	out          string // cache path, keyed by all of the rest
	im           image
	tools, files []string // resolved tool paths and data files, sorted
}

// baseInputsFor resolves im's tools and computes the cache path of its
// base initramfs: the kernel version and a hash of the scripts, the module
// lists and the identity (path, size, mtime) of every tool and file.
func (h *Harness) baseInputsFor(im image) (baseInputs, error) {
	if err := im.validate(); err != nil {
		return baseInputs{}, err
	}
	b := baseInputs{im: im}
	k, sum := newKey()
	k.str("kernel", h.host.kernel)
	for _, s := range []string{"build-initramfs.sh", "lib.sh", "init"} {
		if err := k.file(filepath.Join(h.scripts, s)); err != nil {
			return b, err
		}
	}
	mods := append([]string(nil), im.modules...)
	sort.Strings(mods)
	k.list("modules", mods)
	k.list("preload", im.preload)
	for _, t := range im.tools {
		p, err := resolveTool(t)
		if err != nil {
			return b, err
		}
		b.tools = append(b.tools, p)
	}
	sort.Strings(b.tools)
	for _, p := range b.tools {
		if err := k.stat(p); err != nil {
			return b, fmt.Errorf("tool %s for the guest: %w", p, err)
		}
	}
	b.files = append([]string(nil), im.files...)
	sort.Strings(b.files)
	for _, f := range b.files {
		if err := k.stat(f); err != nil {
			return b, fmt.Errorf("file %s for the guest: %w", f, err)
		}
	}
	if bb, err := exec.LookPath("busybox"); err == nil {
		if err := k.stat(bb); err != nil {
			return b, err
		}
	}
	b.out = filepath.Join(h.cache, h.host.kernel, "initramfs-"+sum()+".cpio")
	return b, nil
}

// baseImage returns the cached base initramfs for im, building it first if
// needed.
func (h *Harness) baseImage(ctx context.Context, im image) (string, error) {
	b, err := h.baseInputsFor(im)
	if err != nil {
		return "", err
	}
	err = buildOnce(ctx, b.out, func(ctx context.Context) error {
		start := time.Now()
		if err := os.MkdirAll(filepath.Dir(b.out), 0o755); err != nil {
			return err
		}
		err := runScript(ctx, buildTimeout, filepath.Join(h.scripts, "build-initramfs.sh"),
			"-k", h.host.kernel, "-o", b.out,
			"-m", strings.Join(im.modules, " "),
			"-l", strings.Join(im.preload, " "),
			"-t", strings.Join(b.tools, " "),
			"-f", strings.Join(b.files, " "))
		h.logf("kerneltest: built base initramfs for %s in %s", h.host.kernel, time.Since(start).Round(time.Millisecond))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("build initramfs for %s: %w", h.host.kernel, err)
	}
	return b.out, nil
}

// BuildTest compiles the tests of pkg (an import path, or a path relative
// to the module root such as ./agent/storage/cache) into dir and returns
// the binary's path.
func (h *Harness) BuildTest(ctx context.Context, pkg, dir string, opts Options) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	out := filepath.Join(dir, "test.bin")
	args := []string{"test", "-c", "-o", out}
	if len(opts.Tags) > 0 {
		args = append(args, "-tags", strings.Join(opts.Tags, ","))
	}
	cmd := exec.CommandContext(ctx, goTool(), append(args, pkg)...)
	cmd.Dir = h.repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED="+map[bool]string{true: "1", false: "0"}[opts.CGO])
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go test -c %s: %w\n%s", pkg, err, b)
	}
	if !fileExists(out) {
		return "", fmt.Errorf("go test -c %s: no test binary (the package has no tests?)", pkg)
	}
	h.logf("kerneltest: compiled %s in %s", pkg, time.Since(start).Round(time.Millisecond))
	return out, nil
}

// goTool is the go command: the one in PATH, else the one of the toolchain
// that built this binary.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}
