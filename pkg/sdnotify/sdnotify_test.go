package sdnotify

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen stands in for systemd: a unixgram socket set as NOTIFY_SOCKET.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

func read(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no notify message: %v", err)
	}
	return string(buf[:n])
}

func TestReadyStoppingAndWatchdog(t *testing.T) {
	c := listen(t)
	Ready("serving")
	if m := read(t, c); !strings.Contains(m, "READY=1") || !strings.Contains(m, "STATUS=serving") {
		t.Fatalf("ready message %q", m)
	}
	Stopping()
	if m := read(t, c); m != "STOPPING=1" {
		t.Fatalf("stopping message %q", m)
	}
	t.Setenv("WATCHDOG_USEC", "200000")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go Watchdog(ctx, slog.New(slog.DiscardHandler), func() bool { return true })
	for i := 0; i < 2; i++ {
		if m := read(t, c); m != "WATCHDOG=1" {
			t.Fatalf("watchdog message %q", m)
		}
	}
}

func TestNoSocketIsNoop(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	Ready("x")
	Stopping()
	Watchdog(context.Background(), slog.New(slog.DiscardHandler), func() bool { return true }) // returns at once
}
