// Command strata-coordinator serves the Strata API, keeps desired state and
// the epoch log, and watches host liveness through gossip.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/coordinator/config"
	"github.com/strata-infra/strata/pkg/clidoc"
)

func main() {
	var cfg config.Config
	var cfgPath string
	cmd := &cobra.Command{
		Use:           "strata-coordinator",
		Short:         "Strata coordinator: API, desired state, epochs, scheduling",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			required := cmd.Flags().Changed("config")
			if err := cfg.Load(cfgPath, required, cmd.Flags()); err != nil {
				return err
			}
			return run(cmd.Context(), &cfg)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", config.DefaultPath, "config file (YAML)")
	cfg.BindFlags(cmd.Flags())
	cmd.AddCommand(backupCmd(), restoreCmd(), clidoc.Command("8"))
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "strata-coordinator:", err)
		os.Exit(1)
	}
}
