package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// resyncer is the part of the agent SIGHUP drives.
type resyncer interface{ Resync() }

// reloadOnHUP turns SIGHUP (systemctl reload strata-agent) into a resync
// until ctx ends; the returned channel closes then. SIGHUP is caught from
// the moment it returns: its default action would end the agent.
func reloadOnHUP(ctx context.Context, a resyncer, log *slog.Logger) <-chan struct{} {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: resyncing against the held plan")
				a.Resync()
			}
		}
	}()
	return done
}
