package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"

	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/coordinator/ctl"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

func projectsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "projects", Aliases: []string{"project"}, Short: "Projects (tenants)"}
	var desc string
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a project", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			spec, _ := json.Marshal(api.ProjectSpec{Description: desc})
			var pr api.PutResult
			if err := c.Do(cmd.Context(), http.MethodPost, "/v1/projects", api.ResourceRequest{Name: args[0], Spec: spec}, &pr); err != nil {
				return err
			}
			return g.print(cmd, pr, ctl.Table{Header: []string{"NAME", "EPOCH"}, Rows: [][]string{{pr.Resource.Name, fmt.Sprint(pr.Epoch)}}})
		},
	}
	create.Flags().StringVar(&desc, "description", "", "free-text description")
	list := &cobra.Command{
		Use: "list", Short: "List projects", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var rs []api.Resource
			if err := c.Do(cmd.Context(), http.MethodGet, "/v1/projects", nil, &rs); err != nil {
				return err
			}
			t := ctl.Table{Header: []string{"NAME", "DESCRIPTION", "EPOCH", "CREATED"}}
			for _, r := range rs {
				var s api.ProjectSpec
				_ = json.Unmarshal(r.Spec, &s)
				t.Rows = append(t.Rows, []string{r.Name, s.Description, fmt.Sprint(r.Epoch), r.Created.Format("2006-01-02T15:04:05Z")})
			}
			return g.print(cmd, rs, t)
		},
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete an empty project", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var dr api.DeleteResult
			if err := c.Do(cmd.Context(), http.MethodDelete, apiclient.ResourcePath("projects", "", args[0]), nil, &dr); err != nil {
				return err
			}
			return g.print(cmd, dr, ctl.Table{Header: []string{"NAME", "DELETED", "EPOCH"}, Rows: [][]string{{args[0], fmt.Sprint(dr.Deleted), fmt.Sprint(dr.Epoch)}}})
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}

func readManifest(path string) ([]ctl.Doc, error) {
	f := os.Stdin
	if path != "-" {
		var err error
		if f, err = os.Open(path); err != nil {
			return nil, err
		}
		defer f.Close()
	}
	return ctl.ParseManifest(f)
}

func manifestCmd(g *globals, use, short string, do func(*cobra.Command, *apiclient.Client, []ctl.Doc) ([]ctl.Result, error)) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use: use, Short: short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("-f FILE is required")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			docs, err := readManifest(file)
			if err != nil {
				return err
			}
			rs, err := do(cmd, c, docs)
			if g.output == "json" {
				if perr := g.print(cmd, rs, ctl.Table{}); perr != nil {
					return perr
				}
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), ctl.Summary(rs))
			}
			if err != nil {
				return err
			}
			// A resource that is still there is waited for by itself; the
			// deleted ones by the epoch of the last delete.
			var last uint64
			for _, r := range rs {
				if r.Path == "" {
					last = max(last, r.Epoch)
				} else if err := g.waitApplied(cmd, c, r.Path, r.Epoch); err != nil {
					return fmt.Errorf("%s: %w", r.Ref, err)
				}
			}
			if last > 0 {
				return g.waitApplied(cmd, c, "", last)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "manifest file (YAML, several documents; - for stdin)")
	return cmd
}

func applyCmd(g *globals) *cobra.Command {
	var dryRun bool
	cmd := manifestCmd(g, "apply", "Create or update every resource in a file, in dependency order",
		func(cmd *cobra.Command, c *apiclient.Client, docs []ctl.Doc) ([]ctl.Result, error) {
			if dryRun {
				return ctl.DryRun(cmd.Context(), c, docs, progressOut(g, cmd))
			}
			return ctl.Apply(cmd.Context(), c, docs, progressOut(g, cmd))
		})
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "change nothing: show what each resource's write would do and the spec it would store (checked by the coordinator as the apply would be)")
	return cmd
}

func deleteCmd(g *globals) *cobra.Command {
	return manifestCmd(g, "delete", "Delete every resource in a file, in reverse dependency order",
		func(cmd *cobra.Command, c *apiclient.Client, docs []ctl.Doc) ([]ctl.Result, error) {
			return ctl.Delete(cmd.Context(), c, docs, progressOut(g, cmd))
		})
}

// progressOut prints a line per resource in table mode; JSON stays clean.
func progressOut(g *globals, cmd *cobra.Command) interface{ Write([]byte) (int, error) } {
	if g.output == "json" {
		return nil
	}
	return cmd.OutOrStdout()
}
