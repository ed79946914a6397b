// Package sdnotify speaks systemd's notify protocol for Type=notify units
// through go-systemd: READY=1, STOPPING=1, STATUS= and watchdog pings. Off
// systemd (no NOTIFY_SOCKET) every call is a no-op.
package sdnotify

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Ready tells systemd the service is up.
func Ready(status string) { notify(daemon.SdNotifyReady + "\nSTATUS=" + status) }

// Stopping tells systemd a graceful stop has begun.
func Stopping() { notify(daemon.SdNotifyStopping) }

// Status sets the one-line status systemctl shows.
func Status(s string) { notify("STATUS=" + s) }

func notify(state string) { _, _ = daemon.SdNotify(false, state) }

// Watchdog pings systemd at half of WatchdogSec while healthy() holds, until
// ctx ends; it returns at once when the unit has no watchdog or there is
// no notify socket to ping (a WATCHDOG_USEC inherited outside systemd). A
// process whose main loop is stuck stops pinging and systemd restarts it.
func Watchdog(ctx context.Context, log *slog.Logger, healthy func() bool) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 || os.Getenv("NOTIFY_SOCKET") == "" {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	log.Info("systemd watchdog enabled", "interval", interval)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if healthy() {
				notify(daemon.SdNotifyWatchdog)
			}
		}
	}
}
