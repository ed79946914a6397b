package main

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/pkg/api"
)

// aggregatesCmd manages host aggregates: named hosts with metadata that
// flavors' extra specs select (admin).
func aggregatesCmd(g *globals) *cobra.Command {
	cmd, k := newKindCmd(g, "aggregates", []string{"aggregate"}, "Host aggregates: hosts with key/value metadata (admin)", false)
	var s api.AggregateSpec
	create := &cobra.Command{
		Use: "create NAME", Short: "Create an aggregate", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return k.create(cmd, args[0], s) },
	}
	create.Flags().StringSliceVar(&s.Hosts, "host", nil, "member host (repeatable)")
	create.Flags().StringToStringVar(&s.Metadata, "meta", nil, "metadata key=value (repeatable)")
	list := listCmd(k, []string{"HOSTS", "METADATA"}, func(_ api.Resource, s api.AggregateSpec) []string {
		var meta []string
		for k, v := range s.Metadata {
			meta = append(meta, k+"="+v)
		}
		sort.Strings(meta)
		return []string{strings.Join(s.Hosts, ","), strings.Join(meta, ",")}
	})
	addHost := modifyCmd(k, "add-host NAME HOST...", "Add hosts to an aggregate", cobra.MinimumNArgs(2),
		func(s *api.AggregateSpec, hosts []string) error {
			for _, h := range hosts {
				if !slices.Contains(s.Hosts, h) {
					s.Hosts = append(s.Hosts, h)
				}
			}
			return nil
		})
	removeHost := modifyCmd(k, "remove-host NAME HOST...", "Remove hosts from an aggregate", cobra.MinimumNArgs(2),
		func(s *api.AggregateSpec, hosts []string) error {
			s.Hosts = slices.DeleteFunc(s.Hosts, func(h string) bool { return slices.Contains(hosts, h) })
			return nil
		})
	setMeta := modifyCmd(k, "set NAME KEY=VALUE...", "Set metadata of an aggregate (KEY= removes KEY)", cobra.MinimumNArgs(2),
		func(s *api.AggregateSpec, kvs []string) error {
			for _, kv := range kvs {
				key, v, ok := strings.Cut(kv, "=")
				if !ok || key == "" {
					return fmt.Errorf("%q: want KEY=VALUE", kv)
				}
				if s.Metadata == nil {
					s.Metadata = map[string]string{}
				}
				if v == "" {
					delete(s.Metadata, key)
				} else {
					s.Metadata[key] = v
				}
			}
			return nil
		})
	cmd.AddCommand(create, list, addHost, removeHost, setMeta, k.deleteCmd())
	return cmd
}

// serverGroupsCmd manages a project's server groups.
func serverGroupsCmd(g *globals) *cobra.Command {
	cmd, k := newKindCmd(g, "servergroups", []string{"servergroup", "groups"}, "Server groups: placement policies of a project's instances", true)
	var s api.ServerGroupSpec
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a server group", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return k.create(cmd, args[0], s) },
	}
	create.Flags().StringVar(&s.Policy, "policy", "anti-affinity", "affinity, anti-affinity, soft-affinity or soft-anti-affinity")
	list := listCmd(k, []string{"POLICY"}, func(_ api.Resource, s api.ServerGroupSpec) []string { return []string{s.Policy} })
	cmd.AddCommand(create, list, k.deleteCmd())
	return cmd
}

// moveCmds are resize of a stopped instance and migrate (cold, or live
// with --live); both go through the scheduler.
func moveCmds(g *globals, project *string, needProject func() error) []*cobra.Command {
	resize := &cobra.Command{
		Use: "resize NAME FLAVOR", Short: "Give a stopped instance another flavor (the scheduler may move it)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needProject(); err != nil {
				return err
			}
			return modify(cmd, g, "instances", *project, args[0], func(s *api.InstanceSpec) error { s.Flavor = args[1]; return nil })
		},
	}
	var host string
	var live bool
	migrate := &cobra.Command{
		Use:   "migrate NAME",
		Short: "Move an instance, with its disk, to another host the scheduler chooses (or --host, admin)",
		Long: `Move an instance to another host the scheduler chooses (an admin may name it
with --host). A stopped instance moves cold: the new host copies its local
disk from the old one, or defines it on the same RBD image. With --live a
running instance whose root disk is on RBD moves while it runs (libvirt
peer-to-peer migration). The move is done when the new host reports the
instance; "instances show" says where it is.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needProject(); err != nil {
				return err
			}
			return modify(cmd, g, "instances", *project, args[0], func(s *api.InstanceSpec) error {
				switch {
				case live:
					s.LiveMigrations++
				case host == "":
					s.Migrations++
				}
				if host != "" {
					s.Host = host
				}
				return nil
			})
		},
	}
	migrate.Flags().StringVar(&host, "host", "", "target host (admin only)")
	migrate.Flags().BoolVar(&live, "live", false, "move the running instance live (root disk on RBD)")
	return []*cobra.Command{resize, migrate}
}
