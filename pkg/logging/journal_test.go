package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
)

const (
	roleEnv   = "STRATA_LOGGING_TEST_ROLE"
	journald  = "/lib/systemd/systemd-journald"
	ident     = "strata-logtest"
	infoMsg   = "an info line"
	warnMsg   = "a warning line"
	errorMsg  = "an error line"
	debugMsg  = "a debug line"
	groupAttr = "subsystem"
)

// TestPriorityPrefixOnlyOnTheJournalStream checks the writer side: lines
// get "<N>" only when stderr is the stream JOURNAL_STREAM names.
func TestPriorityPrefixOnlyOnTheJournalStream(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(w.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	log, err := New(w, "json", "debug")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug(debugMsg)
	log.With(groupAttr, "x").Info(infoMsg)
	log.WithGroup("g").Warn(warnMsg)
	log.Error(errorMsg)
	w.Close()
	var out bytes.Buffer
	if _, err := out.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{"<7>", "<6>", "<4>", "<3>"}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, want[i]+"{") {
			t.Errorf("line %d = %q, want prefix %q", i, l, want[i])
		}
	}

	// Another file (a terminal, a pipe to a file) gets plain lines.
	var plain bytes.Buffer
	r2, w2, _ := os.Pipe()
	defer r2.Close()
	log2, _ := New(w2, "text", "info")
	log2.Warn(warnMsg)
	w2.Close()
	plain.ReadFrom(r2)
	if strings.HasPrefix(plain.String(), "<") {
		t.Errorf("a stream that is not the journal's got a priority prefix: %q", plain.String())
	}
}

// TestJournalPriorities runs a real systemd-journald in a private mount
// namespace (its sockets and files on a tmpfs over /run and the journal
// directory, so the host's journal is untouched), connects a logger's
// stderr to its stdout stream the way systemd does for a unit, and asks
// journalctl at which priority each line was filed.
func TestJournalPriorities(t *testing.T) {
	switch os.Getenv(roleEnv) {
	case "namespace":
		inNamespace(t)
		return
	case "emit":
		emit()
		return
	}
	testenv.RequireRoot(t, "mounts a tmpfs in a private mount namespace and runs systemd-journald")
	if _, err := os.Stat(journald); err != nil {
		testenv.Missing(t, "systemd-journald", err.Error())
	}
	bins := testenv.RequireBinary(t, "unshare", "journalctl")
	cmd := exec.Command(bins[0], "-m", "--propagation", "private", os.Args[0], "-test.run", "^TestJournalPriorities$", "-test.v")
	cmd.Env = append(os.Environ(), roleEnv+"=namespace")
	out, err := cmd.CombinedOutput()
	t.Logf("in the private mount namespace:\n%s", out)
	if err != nil {
		t.Fatalf("journald test in a private mount namespace failed: %v", err)
	}
}

// inNamespace runs in the child, already in its own mount namespace.
func inNamespace(t *testing.T) {
	for _, dir := range []string{"/run", "/var/log/journal"} {
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
			t.Fatalf("mount tmpfs on %s: %v", dir, err)
		}
	}
	jd := exec.Command(journald)
	var jlog bytes.Buffer
	jd.Stdout, jd.Stderr = &jlog, &jlog
	if err := jd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = jd.Process.Kill()
		_ = jd.Wait()
		if t.Failed() {
			t.Logf("journald output:\n%s", jlog.String())
		}
	}()
	sock := "/run/systemd/journal/stdout"
	var conn *net.UnixConn
	_, err := testenv.Poll(10*time.Second, func() error {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
		if err == nil {
			conn = c
		}
		return err
	})
	if err != nil {
		t.Fatalf("journald's stdout stream %s: %v", sock, err)
	}
	// The stream header systemd sends for a unit: identifier, unit, default
	// priority, level prefix on, no forwarding to syslog, kmsg or console.
	if _, err := fmt.Fprintf(conn, "%s\n\n6\n1\n0\n0\n0\n", ident); err != nil {
		t.Fatal(err)
	}
	if err := conn.CloseRead(); err != nil {
		t.Fatal(err)
	}
	f, err := conn.File()
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	em := exec.Command(os.Args[0], "-test.run", "^TestJournalPriorities$")
	em.Env = append(os.Environ(), roleEnv+"=emit", fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino))
	em.Stdout, em.Stderr = f, f
	if err := em.Run(); err != nil {
		t.Fatalf("logging child: %v", err)
	}
	f.Close()

	want := map[string]string{infoMsg: "6", warnMsg: "4", errorMsg: "3"}
	dir := "/run/log/journal"
	var got map[string]string
	_, err = testenv.Poll(10*time.Second, func() error {
		got = map[string]string{}
		out, err := exec.Command("journalctl", "-D", dir, "-o", "json", "-t", ident, "--no-pager").Output()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var e struct{ MESSAGE, PRIORITY string }
			if json.Unmarshal([]byte(line), &e) != nil {
				continue
			}
			var rec struct{ Msg string }
			if json.Unmarshal([]byte(e.MESSAGE), &rec) == nil {
				got[rec.Msg] = e.PRIORITY
			}
		}
		if len(got) < len(want) {
			return fmt.Errorf("journal has %d of the %d lines", len(got), len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for msg, prio := range want {
		if got[msg] != prio {
			t.Errorf("%q filed at priority %q, want %q", msg, got[msg], prio)
		}
		t.Logf("journal: %-16q PRIORITY=%s", msg, got[msg])
	}
	if _, ok := got[debugMsg]; ok {
		t.Errorf("a debug line reached the journal at level info")
	}
	// What an operator runs: only the warning and the error.
	out, err := exec.Command("journalctl", "-D", dir, "-p", "warning", "-t", ident, "-o", "cat", "--no-pager").Output()
	if err != nil {
		t.Fatal(err)
	}
	n := strings.Count(string(out), "\n")
	if n != 2 || !strings.Contains(string(out), warnMsg) || !strings.Contains(string(out), errorMsg) {
		t.Errorf("journalctl -p warning found %d lines, want the warning and the error:\n%s", n, out)
	}
	if entries, _ := filepath.Glob(dir + "/*/*.journal"); len(entries) == 0 {
		t.Errorf("no journal file under %s", dir)
	}
}

// emit is the logging child: a daemon's logger on a journal stream.
func emit() {
	log, err := New(os.Stderr, "json", "info")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log.Debug(debugMsg)
	log.With(groupAttr, "test").Info(infoMsg)
	log.Warn(warnMsg, "n", 1)
	log.Log(context.Background(), slog.LevelError, errorMsg)
	os.Exit(0)
}
