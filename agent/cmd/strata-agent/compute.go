package main

import (
	"github.com/strata-infra/strata/agent/storage/cachedvol"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/strata-infra/strata/agent/compute"
	"github.com/strata-infra/strata/agent/compute/computeagent"
	"github.com/strata-infra/strata/agent/config"
	"github.com/strata-infra/strata/agent/daemon"
	"github.com/strata-infra/strata/agent/reconcile"
)

// registerCompute registers the compute subsystem, which runs after the
// network one (reconcile.OrderCompute): a pass makes an instance's bridge
// and filter before its domain starts, and l2 says where its taps plug in.
// kernel, when not nil, maps the instances' krbd volumes.
func registerCompute(a *daemon.Agent, cfg *config.Config, log *slog.Logger, l2 computeagent.L2, kernel *cachedvol.Manager) error {
	cc := cfg.Compute
	dir := cc.InstancesDir
	if dir == "" {
		dir = filepath.Join(cfg.StateDir, "compute")
	}
	vols, ceph, err := volumeAttacher(cfg, log)
	if err != nil {
		return err
	}
	var cv compute.Volumes
	if vols != nil {
		if kernel != nil {
			vols.UseKernel(kernel)
			// A volume let go on its own (its flush) ends between passes:
			// the next one reports a failure, or attaches it again.
			vols.OnReleased(a.Runner().Kick)
		}
		cv = vols
		a.Background(ceph.Keep)
		a.Reporter(ceph.Report)
	}
	lv := compute.NewLibvirt(cc.LibvirtSocket, log)
	var mg compute.Migrator
	if cc.MigrationURI != "" {
		mg = compute.NewLibvirtMigrator(lv, func(peer string) (string, string) {
			return strings.ReplaceAll(cc.MigrationURI, "{host}", peer), strings.ReplaceAll(cc.MigrationDataURI, "{host}", peer)
		})
	}
	drv, err := compute.New(compute.Config{
		Hypervisor: lv, Migrator: mg, DomainPrefix: cc.DomainPrefix, Volumes: cv,
		StateDir: dir, DomainType: cc.DomainType, ShutdownTimeout: cc.ShutdownTimeout,
		// The same reservations as the capacity gossip announces.
		Reserved: cfg.Reserved, Ratios: cc.AllocationRatios,
		Logger: log,
	})
	if err != nil {
		return err
	}
	var boot *compute.DirectBoot
	if b := cc.DirectBoot; b.Kernel != "" {
		boot = &compute.DirectBoot{Kernel: b.Kernel, Initrd: b.Initrd, Cmdline: b.Cmdline, Firmware: b.Firmware}
	}
	r, err := computeagent.New(computeagent.Config{Host: cfg.Name, Driver: drv, Boot: boot,
		StateDir: filepath.Join(cfg.StateDir, "computeagent"), Logger: log, Kick: a.Runner().Kick, L2: l2})
	if err != nil {
		return err
	}
	log.Info("compute subsystem", "libvirtd", cc.LibvirtSocket, "domain_type", drv.Status().DomainType,
		"domain_type_reason", drv.Status().DomainTypeReason, "capacity", drv.Status().Capacity)
	a.SetHypervisor(drv.Status().DomainType)
	a.Registry().MustRegister(drv.Collectors()...)
	a.Runner().Register(reconcile.OrderCompute, r)
	a.Background(r.Run)
	a.Reporter(r.Report)
	return nil
}
