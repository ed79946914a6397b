package kerneltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
)

var (
	// ErrTimeout: the guest ran past Options.Timeout and was killed.
	ErrTimeout = errors.New("kernel test guest timed out")
	// ErrTestFailed: the test binary in the guest exited non-zero.
	ErrTestFailed = errors.New("test in kernel test guest failed")
	// ErrNoExitCode: the guest stopped without reporting the test's exit
	// code (a kernel panic, a crash of /init, a qemu failure).
	ErrNoExitCode = errors.New("kernel test guest stopped without an exit code")
)

// Result is what one guest run printed and how it ended.
type Result struct {
	// Output is what the test binary printed (between /init's markers).
	Output string
	// Console is the whole serial console, kernel messages included.
	Console string
	// ExitCode is the test binary's exit code, -1 when none was reported.
	ExitCode int
	// TimedOut is set when the guest was killed at the timeout.
	TimedOut bool
	// Boot is the time from qemu's start to the test binary's start; Total
	// is qemu's whole run.
	Boot, Total time.Duration
	// PID was qemu's process id; the process is gone when Exec returns.
	PID int
}

// Passed reports whether the test binary exited 0.
func (r *Result) Passed() bool { return r != nil && r.ExitCode == 0 }

const (
	startMarker = "<<<strata-kerneltest start>>>"
	maxConsole  = 32 << 20
)

// lockTimeout bounds the wait for another process's guest to finish,
// times STRATA_TIMEOUT_FACTOR.
var lockTimeout = testenv.Scale(15 * time.Minute)

var exitMarker = regexp.MustCompile(`<<<strata-kerneltest exit=(-?\d+)>>>`)

// parseConsole splits the serial console into the test's output and its
// exit code (-1 if the exit marker is missing).
func parseConsole(console string) (output string, exitCode int, started bool) {
	console = strings.ReplaceAll(console, "\r", "")
	i := strings.Index(console, startMarker)
	if i < 0 {
		return "", -1, false
	}
	rest := console[i+len(startMarker):]
	rest = strings.TrimPrefix(rest, "\n")
	m := exitMarker.FindStringSubmatchIndex(rest)
	if m == nil {
		return rest, -1, true
	}
	code, err := strconv.Atoi(rest[m[2]:m[3]])
	if err != nil {
		code = -1
	}
	return rest[:m[0]], code, true
}

// Exec boots a guest that runs the compiled test binary bin with args and
// returns its result. The error is nil only when the binary exited 0; it
// wraps ErrTestFailed, ErrTimeout or ErrNoExitCode when the guest ran but
// did not pass, and the Result is then filled in too.
func (h *Harness) Exec(ctx context.Context, bin string, args []string, opts Options) (*Result, error) {
	vmlinux, err := h.kernel(ctx)
	if err != nil {
		return nil, err
	}
	base, err := h.baseImage(ctx, opts.image())
	if err != nil {
		return nil, err
	}
	work, err := h.tempDir("run-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	initrd, err := h.packRun(ctx, work, base, bin, args, guestEnv(opts.Env))
	if err != nil {
		return nil, err
	}

	lctx, cancel := context.WithTimeout(ctx, lockTimeout)
	defer cancel()
	l, err := lockFile(lctx, filepath.Join(h.cache, "guest.lock"))
	if err != nil {
		return nil, fmt.Errorf("wait for another kernel test guest: %w", err)
	}
	defer l.unlock()
	return h.boot(ctx, vmlinux, initrd, opts)
}

// guestEnv is env plus this process's STRATA_TIMEOUT_FACTOR and
// STRATA_STRICT (unless env sets them): the guest's waits scale and its
// missing parts fail as the host's do.
func guestEnv(env map[string]string) map[string]string {
	out := make(map[string]string, len(env)+2)
	for _, k := range []string{testenv.FactorEnv, testenv.StrictEnv} {
		if v, ok := os.LookupEnv(k); ok {
			out[k] = v
		}
	}
	for k, v := range env {
		out[k] = v
	}
	return out
}

// packRun writes the initrd of one run: the base archive followed by an
// archive with the test binary, its arguments and its environment.
func (h *Harness) packRun(ctx context.Context, work, base, bin string, args []string, env map[string]string) (string, error) {
	argsFile := filepath.Join(work, "args")
	envFile := filepath.Join(work, "env")
	a, err := argsText(args)
	if err != nil {
		return "", err
	}
	e, err := envText(env)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(argsFile, []byte(a), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(envFile, []byte(e), 0o644); err != nil {
		return "", err
	}
	testCpio := filepath.Join(work, "test.cpio")
	if err := runScript(ctx, buildTimeout, filepath.Join(h.scripts, "pack-test.sh"), bin, testCpio, argsFile, envFile); err != nil {
		return "", err
	}
	initrd := filepath.Join(work, "initrd.cpio")
	if err := concat(initrd, base, testCpio); err != nil {
		return "", fmt.Errorf("write initrd: %w", err)
	}
	return initrd, nil
}

// argsText is /test/args: one argument a line.
func argsText(args []string) (string, error) {
	var b strings.Builder
	for _, a := range args {
		if strings.ContainsAny(a, "\n\x00") {
			return "", fmt.Errorf("guest argument %q: contains a newline or NUL", a)
		}
		b.WriteString(a + "\n")
	}
	return b.String(), nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// envText is /test/env: export lines for /init to source.
func envText(env map[string]string) (string, error) {
	keys := make([]string, 0, len(env))
	for k := range env {
		if !envName.MatchString(k) {
			return "", fmt.Errorf("guest environment variable %q: not a valid name", k)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s='%s'\n", k, strings.ReplaceAll(env[k], "'", `'\''`))
	}
	return b.String(), nil
}

func concat(out string, parts ...string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	for _, p := range parts {
		in, err := os.Open(p)
		if err != nil {
			f.Close()
			return err
		}
		_, err = io.Copy(f, in)
		in.Close()
		if err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// qemuArgs is the guest's command line.
func (h *Harness) qemuArgs(vmlinux, initrd string, opts Options) []string {
	args := []string{
		"-accel", "tcg,tb-size=64", "-cpu", "max", "-smp", "1",
		"-m", strconv.Itoa(opts.memoryMB()),
		"-display", "none", "-vga", "none", "-monitor", "none", "-serial", "stdio",
		"-no-reboot", "-bios", qbootROM,
		"-kernel", vmlinux, "-initrd", initrd,
		// no_timer_check: on a loaded host a TCG guest's timer ticks
		// late and the kernel's IO-APIC timer check panics the boot
		// ("IO-APIC + timer doesn't work!"), as seen on a shared CI
		// machine.
		"-append", "console=ttyS0 panic=-1 quiet no_timer_check",
		"-nic", "none",
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile=",
	}
	for i, d := range opts.Drives {
		// The file name goes through qemu's option parser: commas double.
		args = append(args, "-drive", fmt.Sprintf("file=%s,format=raw,if=virtio,cache=writethrough,id=d%d", strings.ReplaceAll(d, ",", ",,"), i))
	}
	return args
}

// boot runs qemu until it exits or the timeout, and kills it (by its pid)
// on every way out.
func (h *Harness) boot(ctx context.Context, vmlinux, initrd string, opts Options) (*Result, error) {
	timeout := opts.timeout()
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, ErrTimeout)
	defer cancel()

	type done struct {
		console  []byte
		err      error
		startErr error
		pid      int
	}
	ch := make(chan done, 1)
	start := time.Now()
	var bootAt time.Duration
	go func() {
		// qemu gets Pdeathsig so it dies with this process; Pdeathsig is
		// tied to the thread that started it, so hold the thread until
		// qemu is gone.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cmd := exec.Command(h.host.qemu, h.qemuArgs(vmlinux, initrd, opts)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var console limitedBuffer
		console.limit = maxConsole
		console.onStart = func() { bootAt = time.Since(start) }
		cmd.Stdout = &console
		cmd.Stderr = &console
		if err := cmd.Start(); err != nil {
			ch <- done{startErr: fmt.Errorf("start %s: %w", h.host.qemu, err)}
			return
		}
		h.logf("kerneltest: qemu pid %d booting %s (timeout %s)", cmd.Process.Pid, h.host.kernel, timeout)
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		var err error
		select {
		case err = <-waited:
		case <-ctx.Done():
			cmd.Process.Kill()
			<-waited
			err = context.Cause(ctx)
		}
		ch <- done{console: console.Bytes(), err: err, pid: cmd.Process.Pid}
	}()
	d := <-ch
	total := time.Since(start)
	if d.startErr != nil {
		return nil, d.startErr
	}
	res := &Result{Console: strings.ReplaceAll(string(d.console), "\r", ""), Total: total, Boot: bootAt, PID: d.pid}
	out, code, started := parseConsole(res.Console)
	res.Output, res.ExitCode = out, code
	h.logf("kerneltest: guest ran %s (test started after %s), exit code %d", total.Round(time.Millisecond), bootAt.Round(time.Millisecond), code)
	switch {
	case errors.Is(d.err, ErrTimeout):
		res.TimedOut, res.ExitCode = true, -1
		return res, fmt.Errorf("%w: killed after %s (test started: %t)", ErrTimeout, timeout, started)
	case d.err != nil && code < 0:
		return res, fmt.Errorf("qemu: %w", d.err)
	case code < 0:
		return res, ErrNoExitCode
	case code != 0:
		return res, fmt.Errorf("%w: exit code %d", ErrTestFailed, code)
	}
	return res, nil
}

// limitedBuffer keeps the first limit bytes written and notices the
// start marker as it streams by.
type limitedBuffer struct {
	buf     bytes.Buffer
	limit   int
	onStart func()
	started bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	from := max(0, b.buf.Len()-len(startMarker))
	if room := b.limit - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	// Look only at what this write added (and the marker's length
	// before it, for a marker split across writes).
	if !b.started && bytes.Contains(b.buf.Bytes()[from:], []byte(startMarker)) {
		b.started = true
		if b.onStart != nil {
			b.onStart()
		}
	}
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte { return b.buf.Bytes() }
