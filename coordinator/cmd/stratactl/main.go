// Command stratactl is the operator's CLI over the coordinator API.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/coordinator/ctl"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
	"github.com/strata-infra/strata/pkg/clidoc"
)

type globals struct {
	endpoint  string
	tokenFile string
	caFile    string
	output    string
	context   string
	flags     interface{ Changed(string) bool }
	// wait makes a change wait until the hosts have applied it.
	wait        bool
	waitTimeout time.Duration

	// The config file's current context, read once per command.
	cur     cliContext
	curErr  error
	curRead bool
}

// Where each setting comes from, first found wins: the flag, the
// environment, the current context of the config file, the default.
const defaultEndpoint, defaultCAFile = "https://127.0.0.1:7070", "/etc/strata/ca.crt"

func (g *globals) changed(flag string) bool { return g.flags != nil && g.flags.Changed(flag) }

func (g *globals) client() (*apiclient.Client, error) {
	cur, err := g.current()
	if err != nil {
		return nil, err
	}
	endpoint := firstOf(g.endpoint, os.Getenv("STRATA_ENDPOINT"), cur.Endpoint, defaultEndpoint)
	// A file or the environment: no secret in argv, help or history.
	tok := ""
	tokenFile := firstOf(g.tokenFile, os.Getenv("STRATA_TOKEN_FILE"))
	if tokenFile == "" && os.Getenv("STRATA_TOKEN") == "" {
		tokenFile = cur.TokenFile
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		tok = os.Getenv("STRATA_TOKEN")
	}
	if tok == "" {
		return nil, errors.New("no token: set --token-file, STRATA_TOKEN_FILE or STRATA_TOKEN, or a context (stratactl config set-context)")
	}
	// --ca-file "" on purpose trusts the system's roots.
	caFile := g.caFile
	if !g.changed("ca-file") {
		caFile = firstOf(os.Getenv("STRATA_CA_FILE"), cur.CAFile, defaultCAFile)
	}
	return apiclient.NewPinned(endpoint, tok, caFile)
}

// project is the default project: $STRATA_PROJECT, else the context's.
func (g *globals) project() (string, error) {
	if p := os.Getenv("STRATA_PROJECT"); p != "" {
		return p, nil
	}
	cur, err := g.current()
	return cur.Project, err
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func (g *globals) print(cmd *cobra.Command, v any, t ctl.Table) error {
	return ctl.Print(cmd.OutOrStdout(), g.output, v, t)
}

// waitApplied, with --wait, waits until the live hosts have applied the
// change that moved the cluster to epoch (path names the resource; "" for
// a delete), with a progress line on stderr when it is a terminal, and
// says where it was applied.
func (g *globals) waitApplied(cmd *cobra.Command, c *apiclient.Client, path string, epoch uint64) error {
	if !g.wait {
		return nil
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), g.waitTimeout)
	defer cancel()
	p := newProgress(cmd.ErrOrStderr())
	msg, err := ctl.Wait(ctx, c, path, epoch, p.line)
	p.done()
	if err == nil {
		fmt.Fprintln(cmd.ErrOrStderr(), msg)
	}
	return err
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
	g.flags = pf
	// Defaults name files, never secrets: help prints defaults.
	pf.StringVar(&g.endpoint, "endpoint", "", "coordinator API URL (env STRATA_ENDPOINT; else the context's; else "+defaultEndpoint+")")
	pf.StringVar(&g.tokenFile, "token-file", "", "file holding the API token (env STRATA_TOKEN_FILE, or the token itself in STRATA_TOKEN; else the context's)")
	pf.StringVar(&g.caFile, "ca-file", "", "the coordinator's CA certificate, pinned; \"\" trusts the system's roots (env STRATA_CA_FILE; else the context's; else "+defaultCAFile+")")
	pf.StringVar(&g.context, "context", os.Getenv("STRATA_CONTEXT"), "context of the config file to use (env STRATA_CONTEXT; else its current one)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: "+ctl.Formats)
	pf.BoolVar(&g.wait, "wait", false, "after a change, wait until every live host has applied it (progress on stderr); fail on a host's error")
	pf.DurationVar(&g.waitTimeout, "wait-timeout", 5*time.Minute, "how long --wait waits")
	root.AddCommand(configCmd(g), versionCmd(g), clidoc.Command("1"))
	root.AddCommand(hostsCmd(g), statusCmd(g), projectsCmd(g), tokensCmd(g), gossipCmd(g), quotaCmd(g), applyCmd(g), deleteCmd(g))
	root.AddCommand(flavorsCmd(g), imagesCmd(g), instancesCmd(g), aggregatesCmd(g), serverGroupsCmd(g), fencesCmd(g))
	root.AddCommand(volumeTypesCmd(g), volumesCmd(g), volumeSnapshotsCmd(g))
	root.AddCommand(networksCmd(g), subnetsCmd(g), portsCmd(g), securityGroupsCmd(g), externalNetworksCmd(g), routersCmd(g), floatingIPsCmd(g), firewallGroupsCmd(g))
	requireSubcommands(root)
	addCompletions(g, root)
	addExamples(root)
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
