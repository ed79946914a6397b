package main

import (
	"net/http"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

// The kinds whose names the shell completes, by the plural the API and the
// parent command use; "hosts" is served apart from the kinds.
var completedKinds = []string{"aggregates", "externalnetworks", "firewallgroups", "flavors", "floatingips", "hosts",
	"images", "instances", "networks", "ports", "projects", "routers", "securitygroups", "servergroups", "subnets",
	"volumes", "volumesnapshots", "volumetypes"}

// scopedKinds are those that live in a project.
var scopedKinds = []string{"firewallgroups", "floatingips", "instances", "networks", "ports", "routers", "securitygroups",
	"servergroups", "subnets", "volumes", "volumesnapshots"}

// argKinds maps a placeholder of a command's usage line, or a flag's name,
// to the kind it names when that is not its plural with an s.
var argKinds = map[string]string{"extnet": "externalnetworks", "external-network": "externalnetworks",
	"group": "servergroups", "security-group": "securitygroups", "volume-type": "volumetypes", "snapshot": "volumesnapshots"}

func kindOf(word string) string {
	w := strings.ToLower(strings.Trim(word, "[].")) // NAME..., [PORT]
	if k, ok := argKinds[w]; ok {
		return k
	}
	if w == "project" {
		return "projects"
	}
	if slices.Contains(completedKinds, w+"s") {
		return w + "s"
	}
	return ""
}

// addCompletions makes the shell complete resource names: each argument
// of a kind's subcommand whose usage line names a kind (NAME is the
// parent's own), and each flag named after a kind (--network, --flavor).
// Names come from the coordinator when the user presses tab, in the
// project of -p, $STRATA_PROJECT or the context.
func addCompletions(g *globals, root *cobra.Command) {
	var walk func(c *cobra.Command, parentKind string)
	walk = func(c *cobra.Command, parentKind string) {
		if slices.Contains(completedKinds, c.Name()) {
			parentKind = c.Name()
		}
		if words := strings.Fields(c.Use); parentKind != "" && len(words) > 1 && c.ValidArgsFunction == nil {
			var kinds []string
			for _, w := range words[1:] {
				k := kindOf(w)
				if w == "NAME" || w == "NAME..." {
					k = parentKind
				}
				kinds = append(kinds, k)
			}
			variadic := strings.HasSuffix(words[len(words)-1], "...")
			c.ValidArgsFunction = func(cmd *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
				i := len(args)
				if i >= len(kinds) && variadic {
					i = len(kinds) - 1
				}
				if i >= len(kinds) || kinds[i] == "" {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return g.names(cmd, kinds[i], prefix)
			}
		}
		register := func(f *pflag.Flag) {
			if kind := kindOf(f.Name); kind != "" {
				// A flag defined twice in the tree is registered once.
				_ = c.RegisterFlagCompletionFunc(f.Name, func(cmd *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
					return g.names(cmd, kind, prefix)
				})
			}
		}
		c.LocalNonPersistentFlags().VisitAll(register)
		c.PersistentFlags().VisitAll(register)
		for _, sub := range c.Commands() {
			walk(sub, parentKind)
		}
	}
	walk(root, "")
}

// names lists the names of a kind that start with prefix, for completion.
func (g *globals) names(cmd *cobra.Command, plural, prefix string) ([]string, cobra.ShellCompDirective) {
	fail := cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveError
	c, err := g.client()
	if err != nil {
		return nil, fail
	}
	var names []string
	if plural == "hosts" {
		var hs []api.Host
		if err := c.Do(cmd.Context(), http.MethodGet, "/v1/hosts", nil, &hs); err != nil {
			return nil, fail
		}
		for _, h := range hs {
			names = append(names, h.Name)
		}
	} else {
		project := ""
		if slices.Contains(scopedKinds, plural) {
			if f := cmd.Flag("project"); f != nil {
				project = f.Value.String()
			}
			if project == "" {
				if project, _ = g.project(); project == "" {
					return nil, fail
				}
			}
		}
		var rs []api.Resource
		if err := c.Do(cmd.Context(), http.MethodGet, apiclient.ResourcePath(plural, project, ""), nil, &rs); err != nil {
			return nil, fail
		}
		for _, r := range rs {
			names = append(names, r.Name)
		}
	}
	out := names[:0]
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
