package main

import (
	"errors"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/pkg/api"
)

// fencesCmd lists the fences the recovery controller committed: the
// record of which host was cut off from Ceph when, and whether it is
// released (admin).
func fencesCmd(g *globals) *cobra.Command {
	cmd, k := newKindCmd(g, "fences", []string{"fence"}, "Fences of dead hosts: their Ceph clients blocklisted before anything moved (admin)", false)
	list := listCmd(k, []string{"HOST", "STATE", "ADDRS", "DEAD_SINCE", "REASON"}, func(r api.Resource, s api.FenceSpec) []string {
		state := "committed"
		if r.Status != nil && r.Status.State != "" {
			state = r.Status.State
		}
		if s.Released {
			state = "released"
		}
		return []string{s.Host, state, strings.Join(s.Addrs, ","), s.DeadSince.UTC().Format(time.RFC3339), or(s.Reason, "-")}
	})
	cmd.AddCommand(list)
	return cmd
}

// evacuateCmd lets an admin accept the loss of an instance's dirty cache
// blocks on a dead host, so that the recovery controller restarts it
// elsewhere (it evacuates everything else on its own).
func evacuateCmd(g *globals, project *string, needProject func() error) *cobra.Command {
	var accept bool
	c := &cobra.Command{
		Use:   "evacuate NAME --accept-data-loss",
		Short: "Let an instance held on a dead host by dirty cache blocks restart elsewhere (admin)",
		Long: `The recovery controller restarts the instances of a fenced host elsewhere on
its own, except one whose volumes had dirty writeback-cache blocks on the dead
host: those writes are on that host's cache device, not in Ceph. Its placement
status says how much was at risk; --accept-data-loss restarts it anyway.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !accept {
				return errors.New("evacuate needs --accept-data-loss: the coordinator moves every other instance of a fenced host on its own")
			}
			if err := needProject(); err != nil {
				return err
			}
			return modify(cmd, g, "instances", *project, args[0], func(s *api.InstanceSpec) error { s.AcceptDataLoss = true; return nil })
		},
	}
	c.Flags().BoolVar(&accept, "accept-data-loss", false, "restart it elsewhere although its dirty cache blocks on the dead host are lost")
	return c
}
