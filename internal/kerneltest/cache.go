package kerneltest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// cacheDir returns $STRATA_KERNEL_CACHE or <repo>/build/kernel.
func cacheDir(repo string) string {
	if d := os.Getenv("STRATA_KERNEL_CACHE"); d != "" {
		return d
	}
	return filepath.Join(repo, "build", "kernel")
}

// keyHasher builds a cache key from named inputs.
type keyHasher struct{ h io.Writer }

func newKey() (*keyHasher, func() string) {
	h := sha256.New()
	return &keyHasher{h: h}, func() string { return hex.EncodeToString(h.Sum(nil))[:16] }
}

func (k *keyHasher) str(name, v string) { fmt.Fprintf(k.h, "%s=%q\n", name, v) }

func (k *keyHasher) list(name string, vs []string) { k.str(name, strings.Join(vs, " ")) }

// file adds a file's contents.
func (k *keyHasher) file(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(k.h, "file %s\n", p)
	_, err = io.Copy(k.h, f)
	return err
}

// stat adds a file's identity (resolved path, size, mtime) without reading
// it: enough to notice a package upgrade of a host tool or the kernel.
func (k *keyHasher) stat(p string) error {
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return err
	}
	st, err := os.Stat(r)
	if err != nil {
		return err
	}
	fmt.Fprintf(k.h, "stat %s %s %d %d\n", p, r, st.Size(), st.ModTime().UnixNano())
	return nil
}

// resolveTool finds a tool for the guest: absolute paths as they are,
// names in PATH, then in the sbin and bin directories a CI PATH may lack.
func resolveTool(t string) (string, error) {
	if filepath.IsAbs(t) {
		return t, nil
	}
	p, err := exec.LookPath(t)
	if err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		if st, serr := os.Stat(filepath.Join(d, t)); serr == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return filepath.Join(d, t), nil
		}
	}
	return "", fmt.Errorf("tool %q for the guest: %w (bash testdata/kernel/deps.sh installs the defaults)", t, err)
}

// fileLock is an flock(2) on a file in the cache, so that test processes of
// different packages neither build the same product twice nor boot guests
// at once.
type fileLock struct{ f *os.File }

// lockFile takes an exclusive lock on path, polling until ctx is done.
func lockFile(ctx context.Context, path string) (*fileLock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return &fileLock{f: f}, nil
		}
		if err != syscall.EWOULDBLOCK && err != syscall.EINTR {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (l *fileLock) unlock() {
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}

// buildOnce runs build (which must write out atomically) unless out exists,
// under a lock so that concurrent processes build it once.
func buildOnce(ctx context.Context, out string, build func(ctx context.Context) error) error {
	if fileExists(out) {
		return nil
	}
	l, err := lockFile(ctx, out+".lock")
	if err != nil {
		return err
	}
	defer l.unlock()
	if fileExists(out) {
		return nil
	}
	return build(ctx)
}

// runScript runs one of the harness scripts with a bounded time and returns
// its combined output in the error when it fails.
func runScript(ctx context.Context, timeout time.Duration, script string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...)
	// Its own process group, so that a timeout ends cpio, depmod and the
	// rest with the script.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", filepath.Base(script), err, out)
	}
	return nil
}

// staleAfter is the age past which a work directory left in the cache's
// tmp/ belongs to a killed run (no guest runs that long).
const staleAfter = 2 * time.Hour

// tempDir makes a work directory under the cache's tmp/, so that what a
// killed test process leaves behind stays in the build directory; entries
// older than staleAfter are removed on the way.
func (h *Harness) tempDir(prefix string) (string, error) {
	root := filepath.Join(h.cache, "tmp")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	if ents, err := os.ReadDir(root); err == nil {
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleAfter {
				os.RemoveAll(filepath.Join(root, e.Name()))
			}
		}
	}
	return os.MkdirTemp(root, prefix)
}
