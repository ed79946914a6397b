package main

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/coordinator/ctl"
	"github.com/strata-infra/strata/pkg/api"
)

func hostsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "hosts", Aliases: []string{"host"}, Short: "Hosts known through gossip"}
	for _, drain := range []bool{true, false} {
		use, short, verb := "enable NAME", "Let a drained host take new placements again", "enable"
		if drain {
			use, short, verb = "drain NAME", "Give a host no new placements; --migrate moves its instances, routers and DHCP away", "drain"
		}
		var reason, migrate string
		var moveTimeout time.Duration
		c := &cobra.Command{
			Use: use, Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.client()
				if err != nil {
					return err
				}
				var body any
				if reason != "" {
					body = map[string]string{"reason": reason}
				}
				var pr api.PutResult
				if err := c.Do(cmd.Context(), http.MethodPost, "/v1/hosts/"+args[0]+"/"+verb, body, &pr); err != nil {
					return err
				}
				state := "enabled"
				if drain {
					state = "drained"
				}
				if !pr.Changed {
					state = "already " + state
				}
				if err := g.print(cmd, pr, ctl.Table{Header: []string{"HOST", "STATE", "EPOCH"}, Rows: [][]string{{args[0], state, fmt.Sprint(pr.Epoch)}}}); err != nil {
					return err
				}
				if !drain || migrate == "none" {
					return nil
				}
				return emptyHost(cmd.Context(), c, cmd.ErrOrStderr(), args[0], migrate, moveTimeout)
			},
		}
		if drain {
			c.Flags().StringVar(&reason, "reason", "", "why, for other operators")
			c.Flags().StringVar(&migrate, "migrate", "none", "move the host's instances away: live (running instances on RBD move while they run; stopped ones cold), cold (stop, move, start), or none; then its routers and DHCP")
			c.Flags().DurationVar(&moveTimeout, "move-timeout", defaultMoveTimeout, "with --migrate: how long to wait for each instance to move before giving up (the move itself goes on)")
			c.PreRunE = func(*cobra.Command, []string) error {
				if migrate != "live" && migrate != "cold" && migrate != "none" {
					return fmt.Errorf("--migrate %q: want live, cold or none", migrate)
				}
				if moveTimeout <= 0 {
					return fmt.Errorf("--move-timeout %s: want a positive duration", moveTimeout)
				}
				return nil
			}
		}
		cmd.AddCommand(c)
	}
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List hosts with liveness, capacity and applied epoch", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var hs []api.Host
			if err := c.Do(cmd.Context(), http.MethodGet, "/v1/hosts", nil, &hs); err != nil {
				return err
			}
			t := ctl.Table{Header: []string{"NAME", "STATE", "SINCE", "ADDR", "ZONE", "VTEP", "VCPUS", "RAM_MIB", "DISK_GIB", "EPOCH", "DRAINED", "ERRORS", "REASON"}}
			for _, h := range hs {
				t.Rows = append(t.Rows, []string{h.Name, h.State, since(h), h.Addr, h.Zone, h.VTEP,
					fmt.Sprint(h.Capacity.VCPUs), fmt.Sprint(h.Capacity.RAMMiB), fmt.Sprint(h.Capacity.DiskGiB),
					fmt.Sprint(h.AppliedEpoch), fmt.Sprint(h.Drained), fmt.Sprint(hostErrors(h)), or(h.Reason, "-")})
			}
			return g.print(cmd, hs, t)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use: "show NAME", Short: "Show a host: liveness, epoch, drain reason, failing subsystems and resources", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var h api.Host
			if err := c.Do(cmd.Context(), http.MethodGet, "/v1/hosts/"+args[0], nil, &h); err != nil {
				return err
			}
			if g.output == "json" {
				return g.print(cmd, h, ctl.Table{})
			}
			w := cmd.OutOrStdout()
			drained := "no"
			if h.Drained {
				drained = "yes (" + or(h.Reason, "no reason given") + ")"
			}
			fields{{"name", h.Name}, {"state", h.State + " for " + since(h)}, {"addr", or(h.Addr, "-")}, {"zone", or(h.Zone, "-")},
				{"vtep", or(h.VTEP, "-")}, {"l2", l2Summary(h)}, {"storage", or(strings.Join(h.Storage, ", "), "-")}, {"applied_epoch", fmt.Sprint(h.AppliedEpoch)}, {"drained", drained}}.print(w)
			st := ctl.Table{Header: []string{"SUBSYSTEM", "OK", "EPOCH", "FAILURES", "ERROR"}}
			if h.Report != nil {
				for _, ss := range h.Report.Subsystems {
					st.Rows = append(st.Rows, []string{ss.Name, fmt.Sprint(ss.OK), fmt.Sprint(ss.Epoch), fmt.Sprint(ss.Failures), or(ss.Error, "-")})
				}
			}
			table(w, "subsystems", st)
			table(w, "failing resources", failingTable(h.Failing, false))
			return nil
		},
	})
	return cmd
}

// l2Summary is how the host carries tenant networks: its L2 driver and,
// on ovs hosts, the datapath (and why), flow generation and restores.
func l2Summary(h api.Host) string {
	if h.Report == nil || h.Report.Network == nil {
		return "-"
	}
	n := h.Report.Network
	if n.Datapath == "" {
		return n.L2Driver
	}
	return fmt.Sprintf("%s, datapath %s (%s), flow generation %d, restores %d",
		n.L2Driver, n.Datapath, or(n.DatapathReason, "-"), n.FlowGeneration, n.FlowRestores)
}

func since(h api.Host) string {
	if h.StateSince.IsZero() {
		return "-"
	}
	return time.Since(h.StateSince).Round(time.Second).String()
}

// hostErrors counts a host's failing subsystems and resources.
func hostErrors(h api.Host) int {
	n := len(h.Failing)
	if h.Report != nil {
		for _, s := range h.Report.Subsystems {
			if !s.OK {
				n++
			}
		}
	}
	return n
}

// failingTable lists failing resources with their errors; withHost adds
// the host column.
func failingTable(fs []api.ResourceReport, withHost bool) ctl.Table {
	t := ctl.Table{Header: []string{"RESOURCE", "EPOCH", "ERROR"}}
	if withHost {
		t.Header = []string{"RESOURCE", "HOST", "EPOCH", "ERROR"}
	}
	for _, f := range fs {
		row := []string{f.Key.String(), fmt.Sprint(f.Epoch), f.Message}
		if withHost {
			row = []string{f.Key.String(), f.Host, fmt.Sprint(f.Epoch), f.Message}
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use: "status", Short: "Cluster epoch, each host's applied epoch and liveness, convergence", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var st api.ClusterStatus
			if err := c.Do(cmd.Context(), http.MethodGet, "/v1/status", nil, &st); err != nil {
				return err
			}
			if g.output == "json" {
				return g.print(cmd, st, ctl.Table{})
			}
			conv := "yes"
			if !st.Converged {
				conv = "no (" + strings.Join(st.Reasons, "; ") + ")"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "epoch: %d\nconverged: %s\n\n", st.Epoch, conv)
			t := ctl.Table{Header: []string{"HOST", "STATE", "APPLIED_EPOCH", "CONVERGED", "ERRORS", "RESOURCES"}}
			for _, h := range st.Hosts {
				t.Rows = append(t.Rows, []string{h.Name, h.State, fmt.Sprint(h.AppliedEpoch), fmt.Sprint(h.Converged), fmt.Sprint(h.Errors), fmt.Sprint(h.Resources)})
			}
			if err := g.print(cmd, st, t); err != nil {
				return err
			}
			if len(st.Failing) > 0 {
				fmt.Fprintln(cmd.OutOrStdout())
				table(cmd.OutOrStdout(), "failing resources", failingTable(st.Failing, true))
			}
			return nil
		},
	}
}

func tokensCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "tokens", Short: "API tokens (admin)"}
	var req api.TokenRequest
	create := &cobra.Command{
		Use: "create", Short: "Create a token; its secret is printed once", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var nt api.NewToken
			if err := c.Do(cmd.Context(), http.MethodPost, "/v1/tokens", req, &nt); err != nil {
				return err
			}
			return g.print(cmd, nt, ctl.Table{Header: []string{"ID", "NAME", "ROLE", "PROJECT", "HOST", "SECRET"},
				Rows: [][]string{{nt.ID, nt.Name, nt.Role, nt.Project, nt.Host, nt.Secret}}})
		},
	}
	create.Flags().StringVar(&req.Name, "name", "", "token name")
	create.Flags().StringVar(&req.Role, "role", api.RoleProject, "admin, agent or project")
	create.Flags().StringVar(&req.Project, "project", "", "project of a project token")
	create.Flags().StringVar(&req.Host, "host", "", "the one host an agent token speaks for")
	list := &cobra.Command{
		Use: "list", Short: "List tokens (never their secrets)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var ts []api.Token
			if err := c.Do(cmd.Context(), http.MethodGet, "/v1/tokens", nil, &ts); err != nil {
				return err
			}
			t := ctl.Table{Header: []string{"ID", "NAME", "ROLE", "PROJECT", "HOST", "CREATED"}}
			for _, tk := range ts {
				t.Rows = append(t.Rows, []string{tk.ID, tk.Name, tk.Role, tk.Project, tk.Host, tk.Created.Format(time.RFC3339)})
			}
			return g.print(cmd, ts, t)
		},
	}
	del := &cobra.Command{
		Use: "delete ID", Short: "Revoke a token", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var out map[string]bool
			if err := c.Do(cmd.Context(), http.MethodDelete, "/v1/tokens/"+args[0], nil, &out); err != nil {
				return err
			}
			return g.print(cmd, out, ctl.Table{Header: []string{"ID", "DELETED"}, Rows: [][]string{{args[0], "true"}}})
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}

func gossipCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "gossip", Short: "The gossip pool (admin)"}
	var timeout time.Duration
	rotate := &cobra.Command{
		Use:   "rotate-key",
		Short: "Move the pool to a fresh gossip key without restarts",
		Long: "Installs a new key on every member beside the old one, makes it the key members\n" +
			"encrypt with, then removes the old one; each step waits until the coordinator and\n" +
			"every live host hold it. Hosts down meanwhile get the keyring in their plan.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var res api.GossipRotateResult
			path := "/v1/gossip/rotate-key?timeout=" + timeout.String()
			if err := c.Do(cmd.Context(), http.MethodPost, path, nil, &res); err != nil {
				return err
			}
			return g.print(cmd, res, ctl.Table{Header: []string{"PRIMARY", "EPOCH"},
				Rows: [][]string{{res.Primary, fmt.Sprint(res.Epoch)}}})
		},
	}
	rotate.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long each step waits for the hosts")
	cmd.AddCommand(rotate)
	return cmd
}
