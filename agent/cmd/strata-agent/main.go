// Command strata-agent runs on every host: it converges the host on the
// plan the coordinator holds for it and gossips its liveness and capacity.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/agent/config"
	"github.com/strata-infra/strata/agent/daemon"
	"github.com/strata-infra/strata/pkg/clidoc"
	"github.com/strata-infra/strata/pkg/logging"
	"github.com/strata-infra/strata/pkg/version"
)

func main() {
	var cfg config.Config
	var cfgPath string
	cmd := &cobra.Command{
		Use:           "strata-agent",
		Short:         "Strata host agent",
		Version:       version.Version,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.Load(cfgPath, cmd.Flags().Changed("config"), cmd.Flags()); err != nil {
				return err
			}
			log, err := logging.New(os.Stderr, cfg.LogFormat, cfg.LogLevel)
			if err != nil {
				return err
			}
			a, err := daemon.New(&cfg, log)
			if err != nil {
				return err
			}
			if err := registerSubsystems(a, &cfg, log); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			reloadOnHUP(ctx, a, log)
			return a.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", config.DefaultPath, "config file (YAML)")
	cfg.BindFlags(cmd.Flags())
	cmd.AddCommand(doctorCmd(), clidoc.Command("8"))
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "strata-agent:", err)
		os.Exit(1)
	}
}
