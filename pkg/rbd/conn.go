package rbd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// HelperEnv names the strata-rbd binary to run, overriding the search
// (tests set it to the one they built).
const HelperEnv = "STRATA_RBD_HELPER"

// HelperInstallPath is where the packages install strata-rbd.
const HelperInstallPath = "/usr/lib/strata/strata-rbd"

// HelperPath finds the strata-rbd binary: $STRATA_RBD_HELPER, else
// strata-rbd beside the running binary, else HelperInstallPath. Without
// one this host has no Ceph support (an error wrapping ErrNoCeph).
func HelperPath() (string, error) {
	if p := os.Getenv(HelperEnv); p != "" {
		if err := executable(p); err != nil {
			return "", fmt.Errorf("%s=%s: %v: %w", HelperEnv, p, err, ErrNoCeph)
		}
		return p, nil
	}
	var tried []string
	if exe, err := os.Executable(); err == nil {
		tried = append(tried, filepath.Join(filepath.Dir(exe), "strata-rbd"))
	}
	tried = append(tried, HelperInstallPath)
	for _, p := range tried {
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no strata-rbd at %v (or set %s): %w", tried, HelperEnv, ErrNoCeph)
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}

// Supported reports whether this host can reach Ceph: strata-rbd is there.
func Supported() bool {
	_, err := HelperPath()
	return err == nil
}

// Conn is one connection to the cluster as the configured cephx user.
//
// librados and librbd live in a child process, strata-rbd (built with the
// tag `pacific`), one per Conn, that holds the connection and serves the
// methods below over a socket pair: a process that never uses Ceph never
// loads them, and a crash or a wedge in them cannot take the caller down.
// A helper that died is started again, and connects again, on the next
// call; the call that saw it die returns an error saying so. A helper that
// does not answer within the call's bound (callBound) is wedged: it is
// killed, every call waiting on it fails saying so, and the next call
// starts a new one.
type Conn struct {
	cfg    Config
	mu     sync.Mutex
	h      *helper // nil: none running
	closed bool
	jobs   uint64        // import IDs
	bound  time.Duration // how long a short call may go unanswered
}

// helper is one running strata-rbd.
type helper struct {
	path   string
	cmd    *exec.Cmd
	rpc    *rpc.Client
	exited chan struct{} // closed once cmd.Wait returned
	err    error         // cmd.Wait's, once exited

	killOnce sync.Once
	wedged   atomic.Pointer[string] // why the watchdog killed it
}

// minCallBound is the least a short call may take before its helper counts
// as wedged, however small the configured Timeout.
const minCallBound = 30 * time.Second

// callBound is how long a short call may go unanswered: each of its few
// Ceph round trips (a Claim opens the image, lists watchers and lockers,
// blocklists, breaks a lock) is bounded by librados at timeout, so a
// helper silent for several of them is stuck, not slow.
func callBound(timeout time.Duration) time.Duration {
	return max(4*timeout, minCallBound)
}

// longOps run as long as the data they move, so no bound on the call fits
// them: Copy and Flatten copy an image's data, Remove deletes every object
// of an image (and flattens its clones first when asked), Import writes a
// whole file. Instead their helper must keep answering: a ping (Import:
// each progress poll) every quarter bound, each within the short bound,
// which a stopped or wholly deadlocked helper cannot. Resize only grows
// (a header and the object map), Clone and Snapshot write metadata: short.
var longOps = map[string]bool{"Copy": true, "Flatten": true, "Remove": true, "Import": true}

// Connect starts a helper and opens a connection in it; it fails when the
// helper is missing, or the monitors are unreachable or refuse the user
// within the timeout.
func Connect(cfg Config) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultTimeout
	}
	c := &Conn{cfg: cfg, bound: callBound(cfg.Timeout)}
	c.mu.Lock()
	_, err := c.helper()
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// helper returns the running helper, starting and connecting one when
// there is none. c.mu is held.
func (c *Conn) helper() (*helper, error) {
	if c.closed {
		return nil, errors.New("ceph connection closed")
	}
	if c.h != nil {
		return c.h, nil
	}
	h, err := startHelper()
	if err != nil {
		return nil, err
	}
	var resp Response
	if err := h.ask(Request{Op: "Connect", Config: c.cfg}, &resp, c.bound, "Connect"); err != nil {
		if h.wedged.Load() == nil { // a wedged one is killed already
			h.stop(0)
		}
		return nil, fmt.Errorf("connect to ceph: %s", h.gone(err))
	}
	if err := resp.err(); err != nil {
		h.stop(5 * time.Second)
		return nil, err
	}
	c.h = h
	return h, nil
}

func startHelper() (*helper, error) {
	path, err := HelperPath()
	if err != nil {
		return nil, err
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket pair for strata-rbd: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "strata-rbd"), os.NewFile(uintptr(fds[1]), "strata-rbd")
	defer theirs.Close()
	cmd := exec.Command(path)
	cmd.ExtraFiles = []*os.File{theirs} // its fd 3
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	onSpawnThread(func() { err = cmd.Start() })
	if err != nil {
		ours.Close()
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	nc, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, err
	}
	h := &helper{path: path, cmd: cmd, rpc: rpc.NewClient(nc), exited: make(chan struct{})}
	go func() {
		h.err = cmd.Wait()
		close(h.exited)
	}()
	return h, nil
}

// spawner is a goroutine locked to its OS thread for good: the kernel
// sends a child its Pdeathsig when the thread that forked it exits, and
// Go ends threads (those of goroutines that lock one and return, as
// namespace code does), so children are forked from this one only.
var spawner struct {
	once sync.Once
	ch   chan func()
}

func onSpawnThread(f func()) {
	spawner.once.Do(func() {
		spawner.ch = make(chan func())
		go func() {
			runtime.LockOSThread()
			for f := range spawner.ch {
				f()
			}
		}()
	})
	done := make(chan struct{})
	spawner.ch <- func() { f(); close(done) }
	<-done
}

// stop closes the socket, which makes the helper shut its connection down
// and exit, and kills it if it has not within grace.
func (h *helper) stop(grace time.Duration) {
	h.rpc.Close()
	select {
	case <-h.exited:
	case <-time.After(grace):
		h.cmd.Process.Kill()
		<-h.exited
	}
}

// reapWait is how long kill waits for the killed helper to be reaped. A
// stopped process dies at once; one stuck in the kernel only when it
// leaves it, and its reaper goroutine (startHelper) collects it then.
const reapWait = 10 * time.Second

// kill ends a wedged helper, once: SIGKILL by PID (os.Process signals
// through a pidfd, so a helper already reaped is never mistaken for a new
// process with its PID), then the socket closed so that every call still
// waiting on it fails at once, then the reap. It acts on this helper only:
// a watchdog firing late for an old helper cannot touch the new one.
func (h *helper) kill(why string) {
	h.killOnce.Do(func() {
		h.wedged.Store(&why)
		h.cmd.Process.Kill()
		h.rpc.Close()
		select {
		case <-h.exited:
		case <-time.After(reapWait):
		}
	})
}

// ask sends q and waits for the answer at most bound; a helper that does
// not answer in time is killed as wedged (what names the call for the
// error), and the call then fails on the closed socket.
func (h *helper) ask(q Request, p *Response, bound time.Duration, what string) error {
	call := h.rpc.Go("RBD.Do", q, p, make(chan *rpc.Call, 1))
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-call.Done:
		return call.Error
	case <-t.C:
		h.kill(fmt.Sprintf("%s had no answer within %v", what, bound))
		<-call.Done
		return call.Error
	}
}

// askLong runs one of the longOps: no bound on the call itself, but a ping
// every quarter bound that must be answered within bound.
func (h *helper) askLong(q Request, p *Response, bound time.Duration) error {
	call := h.rpc.Go("RBD.Do", q, p, make(chan *rpc.Call, 1))
	tick := time.NewTicker(max(bound/4, time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-call.Done:
			return call.Error
		case <-tick.C:
			h.ask(Request{Op: "Ping"}, new(Response), bound, "a ping during "+q.Op)
		}
	}
}

// gone describes a helper whose socket failed (callErr): killed as wedged,
// or how it exited.
func (h *helper) gone(callErr error) string {
	pid := h.cmd.Process.Pid
	if why := h.wedged.Load(); why != nil {
		state := "killed"
		select {
		case <-h.exited:
		case <-time.After(reapWait):
			state = "killed (not yet exited: stuck in the kernel?)"
		}
		return fmt.Sprintf("%s (pid %d) is wedged, %s: %s; the next call starts a new one", h.path, pid, state, *why)
	}
	select {
	case <-h.exited:
	case <-time.After(2 * time.Second):
		h.kill(fmt.Sprintf("its socket failed (%v) but it did not exit", callErr))
	}
	how := "was killed but has not exited"
	select {
	case <-h.exited:
		how = "exited"
		if h.err != nil {
			how = h.err.Error()
		}
	default:
	}
	return fmt.Sprintf("%s (pid %d) %s (%v); the next call starts a new one", h.path, pid, how, callErr)
}

// forget drops h as the running helper; the next call starts another.
func (c *Conn) forget(h *helper) {
	c.mu.Lock()
	if c.h == h {
		c.h = nil
	}
	c.mu.Unlock()
}

// call runs one operation in the helper.
func (c *Conn) call(q Request) (Response, error) {
	c.mu.Lock()
	h, err := c.helper()
	bound := c.bound
	c.mu.Unlock()
	if err != nil {
		return Response{}, fmt.Errorf("%s: %w", q.Op, err)
	}
	var p Response
	if longOps[q.Op] {
		err = h.askLong(q, &p, bound)
	} else {
		err = h.ask(q, &p, bound, q.Op)
	}
	if err != nil {
		c.forget(h)
		return p, fmt.Errorf("ceph %s: %s", q.Op, h.gone(err))
	}
	return p, p.err()
}

// Close ends the connection and its helper.
func (c *Conn) Close() {
	c.mu.Lock()
	h := c.h
	c.h, c.closed = nil, true
	c.mu.Unlock()
	if h != nil {
		h.stop(10 * time.Second)
	}
}

// HelperPID is the running helper's process ID, 0 when none runs.
func (c *Conn) HelperPID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.h == nil {
		return 0
	}
	return c.h.cmd.Process.Pid
}

func (c *Conn) do(q Request) error {
	_, err := c.call(q)
	return err
}

// CheckPool reports whether pool exists and the user may list its images.
func (c *Conn) CheckPool(pool string) error { return c.do(Request{Op: "CheckPool", Pool: pool}) }

// List returns the names of the images in pool.
func (c *Conn) List(pool string) ([]string, error) {
	p, err := c.call(Request{Op: "List", Pool: pool})
	return p.Names, err
}

// Create makes an empty image of size bytes owned by owner. It is
// idempotent: an image of that name with the same owner is success.
func (c *Conn) Create(r Ref, size uint64, owner string) error {
	return c.do(Request{Op: "Create", Ref: r, Size: size, Owner: owner})
}

// Clone makes child a copy-on-write clone of parent's snapshot (which is
// protected first if it is not). Idempotent like Create.
func (c *Conn) Clone(parent, child Ref, owner string) error {
	return c.do(Request{Op: "Clone", Ref: parent, Ref2: child, Owner: owner})
}

// Copy makes dst a full, independent copy of src.
func (c *Conn) Copy(src, dst Ref, owner string) error {
	return c.do(Request{Op: "Copy", Ref: src, Ref2: dst, Owner: owner})
}

// Resize grows an image to size bytes; growing to the current size is
// success and a smaller size is ErrShrink, before anything changes.
func (c *Conn) Resize(r Ref, size uint64) error {
	return c.do(Request{Op: "Resize", Ref: r, Size: size})
}

// Flatten copies the parent's data into a clone so it no longer depends on
// it. A clone without a parent is success.
func (c *Conn) Flatten(r Ref) error { return c.do(Request{Op: "Flatten", Ref: r}) }

// Remove deletes an image with all its snapshots. It refuses while the
// image has watchers (ErrInUse) or while clones depend on one of its
// snapshots (ErrHasChildren), unless flattenChildren, which flattens them
// first. An image that is not there is success; one with another owner is
// ErrNotOwned (an empty owner skips the check).
func (c *Conn) Remove(r Ref, owner string, flattenChildren bool) error {
	return c.do(Request{Op: "Remove", Ref: r, Owner: owner, Flag: flattenChildren})
}

// Snapshot makes snapshot r.Snap of r.Image, protected when protect (so
// that clones can be made from it). An existing snapshot is success.
func (c *Conn) Snapshot(r Ref, protect bool) error {
	return c.do(Request{Op: "Snapshot", Ref: r, Flag: protect})
}

// RemoveSnapshot unprotects and deletes a snapshot; it refuses while clones
// depend on it (ErrHasChildren). A missing snapshot is success.
func (c *Conn) RemoveSnapshot(r Ref) error { return c.do(Request{Op: "RemoveSnapshot", Ref: r}) }

// Status reads an image's size, usage, parent and clone depth, snapshots
// with their clones, watchers (other than this connection) and
// exclusive-lock owners.
func (c *Conn) Status(r Ref) (ImageStatus, error) {
	p, err := c.call(Request{Op: "Status", Ref: r})
	if err != nil {
		r.Snap = ""
		return ImageStatus{Ref: r}, err
	}
	return p.Status, nil
}

// Claim is called on a host before its qemu opens image r: it refuses
// (ErrInUse) while another client has the image open, and breaks the
// exclusive lock of an owner that no longer watches it after putting that
// owner on the OSD blocklist. It returns the lock owners it broke.
func (c *Conn) Claim(r Ref) ([]string, error) {
	p, err := c.call(Request{Op: "Claim", Ref: r})
	return p.Names, err
}

// Holders returns who has r open (watchers) and who holds its exclusive
// lock, reading nothing else.
func (c *Conn) Holders(r Ref) (watchers, owners []string, err error) {
	p, err := c.call(Request{Op: "Holders", Ref: r})
	return p.Names, p.Names2, err
}

// BreakLock breaks the exclusive lock owner holds on r (an owner already
// gone counts as broken). The caller blocklists the owner first.
func (c *Conn) BreakLock(r Ref, owner string) error {
	return c.do(Request{Op: "BreakLock", Ref: r, Owner: owner})
}

// BlocklistFor puts addr on the OSD blocklist for expire (an IP fences every
// client of that address; ip:port/nonce one client).
func (c *Conn) BlocklistFor(addr string, expire time.Duration) error {
	return c.do(Request{Op: "BlocklistFor", Addr: addr, TTL: expire})
}

// Unblocklist removes addr from the OSD blocklist.
func (c *Conn) Unblocklist(addr string) error { return c.do(Request{Op: "Unblocklist", Addr: addr}) }

// Blocklisted returns the OSD blocklist: each entry's address and when it
// lapses.
func (c *Conn) Blocklisted() (map[string]time.Time, error) {
	p, err := c.call(Request{Op: "Blocklisted"})
	if err != nil {
		return nil, err
	}
	if p.Until == nil {
		p.Until = map[string]time.Time{}
	}
	return p.Until, nil
}

// Blocklist fences a client address out of the cluster.
func (c *Conn) Blocklist(addr string) error { return c.do(Request{Op: "Blocklist", Addr: addr}) }

// Lease takes or renews an expiring exclusive RADOS lock on object oid in
// pool, as cookie (the host name). It returns whether this connection
// holds it and, when another does, who.
func (c *Conn) Lease(pool, oid, cookie string, ttl time.Duration) (bool, LeaseHolder, error) {
	p, err := c.call(Request{Op: "Lease", Pool: pool, OID: oid, Owner: cookie, TTL: ttl})
	return p.Flag, p.Holder, err
}

// Holder reads who holds the lease, without trying to take it.
func (c *Conn) Holder(pool, oid string) (LeaseHolder, error) {
	p, err := c.call(Request{Op: "Holder", Pool: pool, OID: oid})
	return p.Holder, err
}

// ReleaseLease gives the lease up (a clean stop).
func (c *Conn) ReleaseLease(pool, oid, cookie string) error {
	return c.do(Request{Op: "ReleaseLease", Pool: pool, OID: oid, Owner: cookie})
}

// BreakLease breaks holder's lease without waiting for it to expire (a
// holder whose host is fenced, its client blocklisted first).
func (c *Conn) BreakLease(pool, oid string, holder LeaseHolder) error {
	return c.do(Request{Op: "BreakLease", Pool: pool, OID: oid, Owner: holder.Cookie, Addr: holder.Addr})
}

// FenceEpoch records that the lease holder acts on the plan at epoch and
// refuses (ErrStaleEpoch) when a holder before it already acted on a newer
// one.
func (c *Conn) FenceEpoch(pool, oid string, epoch uint64) error {
	return c.do(Request{Op: "FenceEpoch", Pool: pool, OID: oid, N: epoch})
}

// ActedEpoch is the newest plan epoch a lease holder acted on
// (FenceEpoch), 0 when none did; anyone may read it.
func (c *Conn) ActedEpoch(pool, oid string) (uint64, error) {
	p, err := c.call(Request{Op: "ActedEpoch", Pool: pool, OID: oid})
	return p.N, err
}

// Addr is this connection's client address, as lockers and watchers show
// it ("" when the helper cannot be reached). A restarted helper has a new
// one.
func (c *Conn) Addr() string {
	p, err := c.call(Request{Op: "Addr"})
	if err != nil {
		return ""
	}
	return p.Addr
}

// PoolQuota reads a pool's byte quota (0: none).
func (c *Conn) PoolQuota(pool string) (uint64, error) {
	p, err := c.call(Request{Op: "PoolQuota", Pool: pool})
	return p.N, err
}

// importRaw has the helper write the raw image file at path (size bytes)
// into a new image dst, polling its progress for progress and cancelling
// it when ctx ends.
func (c *Conn) importRaw(ctx context.Context, path string, size uint64, dst Ref, owner string, progress Progress) error {
	c.mu.Lock()
	c.jobs++
	id := c.jobs
	h, err := c.helper()
	bound := c.bound
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("Import: %w", err)
	}
	var p Response
	call := h.rpc.Go("RBD.Do", Request{Op: "Import", N: id, Path: path, Size: size, Ref: dst, Owner: owner}, &p, make(chan *rpc.Call, 1))
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last uint64
	report := func(done uint64) {
		if progress != nil && done > last {
			last = done
			progress(done, size)
		}
	}
	done := ctx.Done()
	for {
		select {
		case <-call.Done:
			if call.Error != nil {
				c.forget(h)
				return fmt.Errorf("ceph Import: %s", h.gone(call.Error))
			}
			if err := p.err(); err != nil {
				return err
			}
			report(size)
			return nil
		// To the import's helper, not c.call: a poll must not start another.
		// A poll is the import's watchdog (longOps): one not answered
		// within the bound kills the helper, and the import fails.
		case <-tick.C:
			var q Response
			if h.ask(Request{Op: "ImportProgress", N: id}, &q, bound, "a progress poll during Import") == nil {
				report(q.N)
			}
		case <-done:
			done = nil // once: the import returns ctx.Err()
			h.ask(Request{Op: "ImportCancel", N: id}, new(Response), bound, "ImportCancel")
		}
	}
}
