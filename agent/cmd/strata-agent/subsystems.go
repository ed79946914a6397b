package main

import (
	"log/slog"

	"github.com/strata-infra/strata/agent/config"
	"github.com/strata-infra/strata/agent/daemon"
)

// registerSubsystems registers the host subsystems this build carries.
// Each capability (network, compute, storage) adds its reconciler here.
func registerSubsystems(a *daemon.Agent, cfg *config.Config, log *slog.Logger) {
	_, _, _ = a, cfg, log
}
