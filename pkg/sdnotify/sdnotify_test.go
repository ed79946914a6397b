package sdnotify

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
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
	_ = c.SetReadDeadline(time.Now().Add(testenv.Scale(5 * time.Second)))
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

// TestNoSocketIsNoop: without NOTIFY_SOCKET (not run by systemd) nothing
// is sent anywhere, even with a watchdog interval in the environment, and
// Watchdog returns at once instead of ticking until its context ends.
func TestNoSocketIsNoop(t *testing.T) {
	c := listen(t) // a listener that must hear nothing
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "20000")
	Ready("x")
	Stopping()
	Status("y")
	done := make(chan struct{})
	healthy := make(chan struct{}, 1)
	go func() {
		defer close(done)
		Watchdog(context.Background(), slog.New(slog.DiscardHandler), func() bool {
			select {
			case healthy <- struct{}{}:
			default:
			}
			return true
		})
	}()
	select {
	case <-done:
	case <-healthy:
		t.Fatal("Watchdog checked health without a notify socket")
	case <-time.After(testenv.Scale(5 * time.Second)):
		t.Fatal("Watchdog without a notify socket did not return")
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 4096)); err == nil {
		t.Fatalf("a message was sent without NOTIFY_SOCKET (%d bytes)", n)
	}
}
