package main

import (
	"log/slog"

	"github.com/strata-infra/strata/agent/config"
	"github.com/strata-infra/strata/agent/daemon"
	"github.com/strata-infra/strata/agent/reconcile"
	"github.com/strata-infra/strata/agent/storage/controller"
	"github.com/strata-infra/strata/pkg/rbd"
)

var _ controller.Pool = (*rbd.Conn)(nil)

// rbdConfig is the driver's view of the storage section.
func rbdConfig(s config.Storage) rbd.Config {
	return rbd.Config{MonHost: s.Ceph.MonHost, User: s.Ceph.User, Keyring: s.Ceph.Keyring, Timeout: s.Ceph.Timeout}
}

// registerStorage registers the storage controller on a host configured
// for it. It goes before compute, so that on the way up a pass makes a
// volume before a domain that uses it starts.
func registerStorage(a *daemon.Agent, cfg *config.Config, log *slog.Logger) error {
	if !cfg.Storage.Controller {
		return nil
	}
	rc := rbdConfig(cfg.Storage)
	c, err := controller.New(controller.Config{
		Host: cfg.Name, LeasePool: cfg.Storage.VolumesPool, LeaseTTL: cfg.Storage.LeaseTTL,
		Connect: func() (controller.Pool, error) {
			conn, err := rbd.Connect(rc)
			if err != nil {
				return nil, err
			}
			return conn, nil
		},
		Logger: log.With("subsystem", "storage"), Kick: a.Runner().Kick, InTouch: a.CoordinatorReachable,
		ReportSoon: a.ReportSoon,
	})
	if err != nil {
		return err
	}
	log.Info("storage controller", "mon_host", rc.MonHost, "user", rc.User, "lease_pool", cfg.Storage.VolumesPool, "ceph_support", rbd.Supported())
	a.Runner().Register(reconcile.OrderStorage, c)
	a.Background(c.Renew)
	a.Background(c.FenceLoop)
	a.OnPlan(c.PlanChanged)
	a.Reporter(c.Report)
	return nil
}
