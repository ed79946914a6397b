// Command stratactl is the operator's CLI over the coordinator API.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/coordinator/ctl"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

type globals struct {
	endpoint string
	token    string
	output   string
}

func (g *globals) client() (*apiclient.Client, error) {
	if g.endpoint == "" {
		return nil, errors.New("no coordinator endpoint: set --endpoint or STRATA_ENDPOINT")
	}
	if g.token == "" {
		return nil, errors.New("no token: set --token or STRATA_TOKEN")
	}
	return apiclient.New(g.endpoint, g.token), nil
}

func (g *globals) print(cmd *cobra.Command, v any, t ctl.Table) error {
	return ctl.Print(cmd.OutOrStdout(), g.output, v, t)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "stratactl",
		Short:         "Operate a Strata cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.endpoint, "endpoint", envOr("STRATA_ENDPOINT", "http://127.0.0.1:7070"), "coordinator API URL (env STRATA_ENDPOINT)")
	pf.StringVar(&g.token, "token", os.Getenv("STRATA_TOKEN"), "API token (env STRATA_TOKEN)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	root.AddCommand(hostsCmd(g), statusCmd(g), projectsCmd(g), tokensCmd(g), gossipCmd(g), applyCmd(g), deleteCmd(g))
	root.AddCommand(flavorsCmd(g), imagesCmd(g), instancesCmd(g), aggregatesCmd(g), serverGroupsCmd(g))
	root.AddCommand(volumeTypesCmd(g), volumesCmd(g), volumeSnapshotsCmd(g))
	root.AddCommand(networksCmd(g), subnetsCmd(g), portsCmd(g), securityGroupsCmd(g), externalNetworksCmd(g), routersCmd(g), floatingIPsCmd(g), firewallGroupsCmd(g))
	requireSubcommands(root)
	return root
}

func main() { os.Exit(execute(os.Args[1:], os.Stdout, os.Stderr)) }

// execute runs stratactl with args and returns its exit code: 0, or 1
// with the error on errw.
func execute(args []string, out, errw io.Writer) int {
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(out)
	root.SetErr(errw)
	if err := root.Execute(); err != nil {
		var ae *api.Error
		if errors.As(err, &ae) && ae.Field != "" {
			fmt.Fprintf(errw, "stratactl: %s (field %s)\n", ae.Message, ae.Field)
		} else {
			fmt.Fprintln(errw, "stratactl:", err)
		}
		return 1
	}
	return 0
}

// requireSubcommands makes every command that only groups others fail on
// a missing or unknown subcommand, instead of printing help and exiting 0.
func requireSubcommands(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		requireSubcommands(c)
	}
	if !cmd.HasSubCommands() || cmd.Run != nil || cmd.RunE != nil {
		return
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(c *cobra.Command, args []string) error {
		var names []string
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		if len(args) == 0 {
			return fmt.Errorf("%s needs a subcommand: %s", c.CommandPath(), strings.Join(names, ", "))
		}
		return fmt.Errorf("unknown command %q for %q; want one of: %s", args[0], c.CommandPath(), strings.Join(names, ", "))
	}
}
