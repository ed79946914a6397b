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
	endpoint  string
	tokenFile string
	caFile    string
	output    string
}

func (g *globals) client() (*apiclient.Client, error) {
	if g.endpoint == "" {
		return nil, errors.New("no coordinator endpoint: set --endpoint or STRATA_ENDPOINT")
	}
	// A file or the environment: no secret in argv, help or history.
	tok := ""
	if g.tokenFile != "" {
		b, err := os.ReadFile(g.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		tok = os.Getenv("STRATA_TOKEN")
	}
	if tok == "" {
		return nil, errors.New("no token: set --token-file, STRATA_TOKEN_FILE or STRATA_TOKEN")
	}
	return apiclient.NewPinned(g.endpoint, tok, g.caFile)
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
	pf.StringVar(&g.endpoint, "endpoint", envOr("STRATA_ENDPOINT", "https://127.0.0.1:7070"), "coordinator API URL (env STRATA_ENDPOINT)")
	// Defaults name files, never secrets: help prints defaults.
	pf.StringVar(&g.tokenFile, "token-file", os.Getenv("STRATA_TOKEN_FILE"), "file holding the API token (env STRATA_TOKEN_FILE; or the token itself in STRATA_TOKEN)")
	pf.StringVar(&g.caFile, "ca-file", envOr("STRATA_CA_FILE", "/etc/strata/ca.crt"), "the coordinator's CA certificate, pinned; empty trusts the system's roots (env STRATA_CA_FILE)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	root.AddCommand(hostsCmd(g), statusCmd(g), projectsCmd(g), tokensCmd(g), gossipCmd(g), quotaCmd(g), applyCmd(g), deleteCmd(g))
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
