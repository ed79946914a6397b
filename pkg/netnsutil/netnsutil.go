// Package netnsutil enters, creates, deletes and lists network namespaces.
//
// Every namespace switch goes through Do: the closure runs on a fresh
// goroutine locked to its OS thread, and a thread that fails to switch back
// is never unlocked, so the Go runtime retires it instead of reusing a thread
// stuck in the wrong namespace (the spirit of CNI's pkg/ns).
package netnsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RunDir is where named namespaces are bind-mounted, as iproute2 does.
const RunDir = "/run/netns"

// Path returns the file of a namespace: a name is looked up under RunDir, an
// absolute path is returned as is, and "" means the caller's namespace.
func Path(nameOrPath string) string {
	if nameOrPath == "" || strings.HasPrefix(nameOrPath, "/") {
		return nameOrPath
	}
	return filepath.Join(RunDir, nameOrPath)
}

// Do runs fn with the calling thread in namespace ns (a name or a path; ""
// runs fn in the caller's namespace without switching).
func Do(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	target, err := os.Open(Path(ns))
	if err != nil {
		return fmt.Errorf("open netns %q: %w", ns, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() { errc <- doLocked(int(target.Fd()), ns, fn) }()
	return <-errc
}

// doLocked must run on its own goroutine: when switching back fails it
// returns with the thread still locked, and the goroutine ends, which makes
// the runtime terminate the thread.
func doLocked(targetFd int, ns string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open current netns: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(targetFd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %q: %w", ns, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it dies with this goroutine.
		return errors.Join(fnErr, fmt.Errorf("leave netns %q: %w", ns, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Handle returns a netlink handle whose socket lives in namespace ns, so that
// later calls on it need no thread switching.
func Handle(ns string) (*netlink.Handle, error) {
	var h *netlink.Handle
	err := Do(ns, func() error {
		var err error
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlink handle in netns %q: %w", ns, err)
	}
	return h, nil
}

// Exists reports whether the named namespace is mounted.
func Exists(name string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(Path(name), &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// Create makes a new named namespace; an existing one is kept (EEXIST is
// success, like ensureBridge).
func Create(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	if Exists(name) {
		return nil
	}
	if err := ensureRunDir(); err != nil {
		return err
	}
	p := Path(name)
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create netns file %q: %w", p, err)
	}
	if f != nil {
		f.Close()
	}
	errc := make(chan error, 1)
	go func() { errc <- unshareAndMount(p) }()
	if err := <-errc; err != nil {
		os.Remove(p)
		return fmt.Errorf("create netns %q: %w", name, err)
	}
	return nil
}

// unshareAndMount runs on its own goroutine; it moves its thread to a new
// namespace, bind-mounts it on p, and returns the thread to where it was.
func unshareAndMount(p string) error {
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("unshare: %w", err)
	}
	self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	mountErr := unix.Mount(self, p, "none", unix.MS_BIND, "")
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return errors.Join(mountErr, fmt.Errorf("return to netns: %w", err))
	}
	runtime.UnlockOSThread()
	if mountErr != nil {
		return fmt.Errorf("bind mount: %w", mountErr)
	}
	return nil
}

// ensureRunDir makes RunDir a shared mount, as iproute2 does, so that
// namespaces mounted later propagate to other mount namespaces.
func ensureRunDir() error {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return fmt.Errorf("create %q: %w", RunDir, err)
	}
	err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %q shared: %w", RunDir, err)
	}
	if err := unix.Mount(RunDir, RunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %q on itself: %w", RunDir, err)
	}
	if err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %q shared: %w", RunDir, err)
	}
	return nil
}

// Delete unmounts and removes a named namespace. A namespace that does not
// exist is success. The namespace itself dies when its last user leaves.
func Delete(name string) error {
	if err := validName(name); err != nil {
		return err
	}
	p := Path(name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount netns %q: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %q: %w", name, err)
	}
	return nil
}

// List returns the names of the mounted namespaces that start with prefix,
// sorted.
func List(prefix string) ([]string, error) {
	ents, err := os.ReadDir(RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", RunDir, err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// DeleteUnwanted deletes the namespaces that start with prefix and that
// keep does not keep. It returns the names it deleted and the errors it
// met: one namespace failing does not stop the others.
func DeleteUnwanted(prefix string, keep func(name string) bool) (deleted []string, errs []error) {
	names, err := List(prefix)
	if err != nil {
		return nil, []error{err}
	}
	for _, ns := range names {
		if keep(ns) {
			continue
		}
		if err := Delete(ns); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, ns)
	}
	return deleted, errs
}

func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("invalid netns name %q", name)
	}
	return nil
}
