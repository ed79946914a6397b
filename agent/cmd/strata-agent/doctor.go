package main

import (
	"errors"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/strata-infra/strata/agent/config"
	"github.com/strata-infra/strata/agent/doctor"
)

// errPreflight makes the command exit non-zero after printing the report.
var errPreflight = errors.New("preflight failed: a required check is missing")

// doctorCmd is `strata-agent doctor`: the preflight of this host for the
// drivers it will run, as a table or JSON. It exits 1 when a required check
// is missing. The network and compute drivers come from the agent config
// unless --network or --compute is given (storage and cache are flags until
// the config carries them); the config also names the coordinator, VTEP,
// underlay and physical network devices, which are checked.
func doctorCmd() *cobra.Command {
	d := doctor.DefaultDrivers()
	var cfgPath, output string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the kernel features, binaries, sockets and files this host's drivers need",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg config.Config
			loadErr := cfg.Load(cfgPath, cmd.Flags().Changed("config"), pflag.NewFlagSet("doctor", pflag.ContinueOnError))
			if loadErr == nil && !cmd.Flags().Changed("network") {
				d.Network = cfg.Network.Driver
			}
			if loadErr == nil && !cmd.Flags().Changed("compute") {
				d.Compute = "none" // a network-only host has no libvirt to check
				if cfg.Compute.Enabled {
					d.Compute = "libvirt"
				}
			}
			if err := d.Validate(); err != nil {
				return err
			}
			var pre []doctor.Result
			files := doctor.Files{TokenFile: cfg.TokenFile, GossipKey: cfg.Gossip.KeyFile, StateDir: cfg.StateDir, OVSDB: cfg.Network.OVS.DB}
			if loadErr != nil {
				// Still check the host; the file checks use the defaults.
				pre = append(pre, doctor.Result{Check: "config", Status: doctor.Missing, Required: true,
					Detail: loadErr.Error(), Fix: "fix " + cfgPath + " (strata-agent --help lists the keys)"})
				var def config.Config
				def.SetDefaults()
				files = doctor.Files{TokenFile: def.TokenFile, StateDir: def.StateDir}
			}
			checks := append(pre, doctor.Run(doctor.Host(), d, files)...)
			if loadErr == nil {
				checks = append(checks, doctor.SetupChecks(doctor.HostProbe(cfg.CoordinatorCAFile), doctor.Setup{Coordinators: cfg.Coordinator, VTEP: cfg.VTEP,
					UnderlayDev: cfg.Network.UnderlayDev, Physnets: cfg.Network.PhysicalNetworks}, d)...)
				checks = append(checks, storageChecks(cfg.Storage)...)
			}
			rep := doctor.NewReport(checks)
			if err := rep.Print(cmd.OutOrStdout(), output); err != nil {
				return err
			}
			if !rep.OK {
				return errPreflight
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgPath, "config", config.DefaultPath, "agent config file (YAML): network driver, token, gossip key and state dir")
	f.StringVar(&d.Network, "network", d.Network, "network driver: linuxbridge, ovs or none (default: the config's network.driver)")
	f.StringVar(&d.Compute, "compute", d.Compute, "compute driver: libvirt or none (default: libvirt when the config's compute.enabled)")
	f.StringVar(&d.Storage, "storage", d.Storage, "storage driver: none, librbd or krbd")
	f.StringVar(&d.Cache, "cache", d.Cache, "SSD cache for krbd volumes: none, writecache or cache")
	f.StringVarP(&output, "output", "o", "table", "output: table or json")
	return cmd
}
