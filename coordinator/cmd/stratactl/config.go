package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/strata-infra/strata/coordinator/ctl"
	"github.com/strata-infra/strata/pkg/api"
)

// A config file names clusters ("contexts") the way a kubeconfig or an
// OpenStack clouds.yaml does, so an operator with several clusters
// switches with one word instead of four environment variables. It holds
// file names, never a secret.
type cliConfig struct {
	CurrentContext string       `json:"current_context,omitempty"`
	Contexts       []cliContext `json:"contexts,omitempty"`
}

type cliContext struct {
	Name      string `json:"name"`
	Endpoint  string `json:"endpoint,omitempty"`
	TokenFile string `json:"token_file,omitempty"`
	CAFile    string `json:"ca_file,omitempty"`
	Project   string `json:"project,omitempty"`
}

// configPath is $STRATA_CONFIG, else $XDG_CONFIG_HOME/strata/config.yaml,
// else ~/.config/strata/config.yaml.
func configPath() string {
	if p := os.Getenv("STRATA_CONFIG"); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "strata", "config.yaml")
}

// loadConfig reads the config file; a missing one is empty.
func loadConfig() (*cliConfig, error) {
	c := &cliConfig{}
	p := configPath()
	if p == "" {
		return c, nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, c); err != nil {
		return nil, fmt.Errorf("config file %s: %w", p, err)
	}
	return c, nil
}

func (c *cliConfig) save() error {
	p := configPath()
	if p == "" {
		return errors.New("no config file: set STRATA_CONFIG or HOME")
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func (c *cliConfig) find(name string) (*cliContext, bool) {
	for i := range c.Contexts {
		if c.Contexts[i].Name == name {
			return &c.Contexts[i], true
		}
	}
	return nil, false
}

// current returns the context named by --context (or STRATA_CONTEXT), else
// the file's current one; none at all is an empty context.
func (g *globals) current() (cliContext, error) {
	// A command asks for its project and then its client: read once.
	if !g.curRead {
		g.cur, g.curErr = g.readCurrent()
		g.curRead = true
	}
	return g.cur, g.curErr
}

func (g *globals) readCurrent() (cliContext, error) {
	c, err := loadConfig()
	if err != nil {
		return cliContext{}, err
	}
	name := g.context
	if name == "" {
		name = c.CurrentContext
	}
	if name == "" {
		return cliContext{}, nil
	}
	ctx, ok := c.find(name)
	if !ok {
		return cliContext{}, fmt.Errorf("context %q is not in %s", name, configPath())
	}
	return *ctx, nil
}

func configCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Contexts: named clusters in " + "$STRATA_CONFIG or ~/.config/strata/config.yaml",
		Example: `  stratactl --endpoint https://10.0.0.5:7070 --token-file ~/.strata/prod.token \
    --ca-file ~/.strata/prod-ca.crt config set-context prod --project web
  stratactl config use-context prod
  stratactl networks list            # uses prod's endpoint, token file, CA and project`}
	var project string
	set := &cobra.Command{
		Use: "set-context NAME", Short: "Create or update a context from --endpoint, --token-file, --ca-file and --project",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fe := api.ValidateName("name", args[0]); fe != nil {
				return fe
			}
			c, err := loadConfig()
			if err != nil {
				return err
			}
			ctx, ok := c.find(args[0])
			if !ok {
				c.Contexts = append(c.Contexts, cliContext{Name: args[0]})
				ctx = &c.Contexts[len(c.Contexts)-1]
			}
			fl := cmd.Flags()
			if fl.Changed("endpoint") {
				ctx.Endpoint = g.endpoint
			}
			if fl.Changed("token-file") {
				abs, err := filepath.Abs(g.tokenFile)
				if err != nil {
					return err
				}
				ctx.TokenFile = abs
			}
			if fl.Changed("ca-file") {
				ctx.CAFile = g.caFile
				if g.caFile != "" {
					if ctx.CAFile, err = filepath.Abs(g.caFile); err != nil {
						return err
					}
				}
			}
			if fl.Changed("project") {
				ctx.Project = project
			}
			if c.CurrentContext == "" {
				c.CurrentContext = ctx.Name
			}
			sort.Slice(c.Contexts, func(i, j int) bool { return c.Contexts[i].Name < c.Contexts[j].Name })
			if err := c.save(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "context %s saved in %s\n", args[0], configPath())
			return nil
		},
	}
	set.Flags().StringVarP(&project, "project", "p", "", "default project for project-scoped commands")
	use := &cobra.Command{
		Use: "use-context NAME", Short: "Make NAME the current context", Args: cobra.ExactArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			c, _ := loadConfig()
			var names []string
			for _, x := range c.Contexts {
				names = append(names, x.Name)
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadConfig()
			if err != nil {
				return err
			}
			if _, ok := c.find(args[0]); !ok {
				return fmt.Errorf("context %q is not in %s (stratactl config get-contexts)", args[0], configPath())
			}
			c.CurrentContext = args[0]
			if err := c.save(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "current context is %s\n", args[0])
			return nil
		},
	}
	get := &cobra.Command{
		Use: "get-contexts", Short: "List the contexts", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig()
			if err != nil {
				return err
			}
			t := ctl.Table{Header: []string{"CURRENT", "NAME", "ENDPOINT", "PROJECT", "TOKEN FILE"}}
			for _, x := range c.Contexts {
				cur := ""
				if x.Name == c.CurrentContext {
					cur = "*"
				}
				t.Rows = append(t.Rows, []string{cur, x.Name, x.Endpoint, x.Project, x.TokenFile})
			}
			return g.print(cmd, c, t)
		},
	}
	cmd.AddCommand(set, use, get)
	return cmd
}
