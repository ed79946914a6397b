package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/coordinator/ctl"
	"github.com/strata-infra/strata/pkg/api"
)

// quotaCmd shows a project's limits and usage, and lets an admin set them.
func quotaCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "quota", Short: "A project's limits and what it holds"}
	show := &cobra.Command{
		Use: "show PROJECT", Short: "Show a project's limits and usage", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var q api.QuotaUsage
			if err := c.Do(cmd.Context(), http.MethodGet, "/v1/projects/"+args[0]+"/quota", nil, &q); err != nil {
				return err
			}
			t := ctl.Table{Header: []string{"RESOURCE", "USED", "LIMIT"}}
			lim, use := quotaFields(&q.Limits), quotaFields(&q.Usage)
			for i, f := range lim {
				l := fmt.Sprint(*f.v)
				if *f.v < 0 {
					l = "none"
				}
				t.Rows = append(t.Rows, []string{f.name, fmt.Sprint(*use[i].v), l})
			}
			return g.print(cmd, q, t)
		},
	}
	var set api.QuotaSpec
	setCmd := &cobra.Command{
		Use:   "set PROJECT --LIMIT N...",
		Short: "Set a project's limits (admin); 0 is the default, -1 no limit",
		Long:  "Sets the limits given; the others keep their stored value.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var cur api.Resource
			spec := api.QuotaSpec{}
			err = c.Do(cmd.Context(), http.MethodGet, "/v1/quotas/"+args[0], nil, &cur)
			var ae *api.Error
			switch {
			case err == nil:
				if err := json.Unmarshal(cur.Spec, &spec); err != nil {
					return fmt.Errorf("quota %s: %w", args[0], err)
				}
			case errors.As(err, &ae) && ae.Code == http.StatusNotFound:
			default:
				return err
			}
			given := 0
			for i, f := range quotaFields(&set) {
				if cmd.Flags().Changed(f.name) {
					*quotaFields(&spec)[i].v = *f.v
					given++
				}
			}
			if given == 0 {
				return errors.New("give at least one limit, e.g. --ports 100")
			}
			var res api.PutResult
			buf, err := json.Marshal(spec)
			if err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), http.MethodPut, "/v1/quotas/"+args[0], api.ResourceRequest{Name: args[0], Spec: buf}, &res); err != nil {
				return err
			}
			return g.print(cmd, res, ctl.Table{Header: []string{"PROJECT", "EPOCH"}, Rows: [][]string{{args[0], fmt.Sprint(res.Epoch)}}})
		},
	}
	for _, f := range quotaFields(&set) {
		setCmd.Flags().IntVar(f.v, f.name, 0, "limit of "+f.name)
	}
	cmd.AddCommand(show, setCmd)
	return cmd
}

type quotaField struct {
	name string
	v    *int
}

func quotaFields(q *api.QuotaSpec) []quotaField {
	return []quotaField{{"networks", &q.Networks}, {"ports", &q.Ports}, {"routers", &q.Routers},
		{"floatingips", &q.FloatingIPs}, {"instances", &q.Instances}, {"vcpus", &q.VCPUs},
		{"ram_mib", &q.RAMMiB}, {"volumes", &q.Volumes}, {"gigabytes", &q.Gigabytes}}
}
