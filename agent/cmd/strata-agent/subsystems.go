package main

import (
	"log/slog"
	"net/netip"

	"github.com/strata-infra/strata/agent/compute/computeagent"
	"github.com/strata-infra/strata/agent/config"
	"github.com/strata-infra/strata/agent/daemon"
	"github.com/strata-infra/strata/agent/network/netagent"
	"github.com/strata-infra/strata/agent/network/ovs"
	"github.com/strata-infra/strata/agent/network/planmap"
	"github.com/strata-infra/strata/agent/reconcile"
)

// registerSubsystems registers the host subsystems this build carries, as
// configured. Each capability (network, compute, storage) adds its
// reconciler here.
func registerSubsystems(a *daemon.Agent, cfg *config.Config, log *slog.Logger) error {
	var l2 computeagent.L2
	if cfg.Network.Driver == "linuxbridge" || cfg.Network.Driver == "ovs" {
		n, err := netagent.New(netagent.Config{
			L2Driver: cfg.Network.Driver,
			OVS: ovs.Config{DB: cfg.Network.OVS.DB, RunDir: cfg.Network.OVS.RunDir, Bridge: cfg.Network.OVS.Bridge,
				Datapath: cfg.Network.OVS.Datapath},
			Self:        planmap.Self{Host: cfg.Name, VTEP: netip.MustParseAddr(cfg.VTEP), UnderlayDev: cfg.Network.UnderlayDev},
			NetNSPrefix: cfg.Network.NetNSPrefix, StateDir: cfg.StateDir, DHCPDomain: cfg.Network.DHCPDomain, DHCPUser: cfg.Network.DHCPUser,
			PhysicalNetworks: cfg.Network.PhysicalNetworks,
			DeadGrace:        cfg.Network.DeadHostGrace, Kick: a.Runner().Kick, StatusChanged: a.ReportSoon,
			Logger: log, Peers: a.Peers,
		})
		if err != nil {
			return err
		}
		a.Registry().MustRegister(n.Collectors()...)
		a.Runner().Register(reconcile.OrderNetwork, n)
		a.Background(n.Supervise)
		a.Reporter(n.Report)
		l2 = n
	}
	if err := registerStorage(a, cfg, log); err != nil {
		return err
	}
	kernel, err := registerVolumeCaches(a, cfg, log)
	if err != nil {
		return err
	}
	if cfg.Compute.Enabled {
		return registerCompute(a, cfg, log, l2, kernel)
	}
	return nil
}
