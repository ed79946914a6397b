package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/coordinator/ctl"
	"github.com/strata-infra/strata/pkg/api"
)

func externalNetworksCmd(g *globals) *cobra.Command {
	cmd, k := newKindCmd(g, "externalnetworks", []string{"externalnetwork", "extnet", "extnets"}, "Flat provider networks for router gateways and floating IPs (admin)", false)
	var s api.ExternalNetworkSpec
	var poolArgs []string
	create := &cobra.Command{
		Use: "create NAME", Short: "Create an external network (admin)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if s.AllocationPools, err = ctl.ParseEach(poolArgs, ctl.ParsePool); err != nil {
				return err
			}
			return k.create(cmd, args[0], s)
		},
	}
	f := create.Flags()
	f.StringVar(&s.PhysicalNetwork, "physical-network", "", "physical network the agents map to an interface (--physnet NAME=IFACE)")
	f.StringVar(&s.CIDR, "cidr", "", "IPv4 range of the provider network")
	f.StringVar(&s.Gateway, "gateway", "", "upstream router address (default: none)")
	f.StringSliceVar(&poolArgs, "pool", nil, "allocation pool START-END for gateways and floating IPs (repeatable)")
	list := listCmd(k, []string{"PHYSICAL_NETWORK", "CIDR", "GATEWAY", "POOLS"}, func(_ api.Resource, s api.ExternalNetworkSpec) []string {
		return []string{s.PhysicalNetwork, s.CIDR, or(s.Gateway, "none"), or(pools(s.AllocationPools), "-")}
	})
	show := showCmd(k, func(s api.ExternalNetworkSpec) fields {
		return fields{{"physical_network", s.PhysicalNetwork}, {"cidr", s.CIDR}, {"gateway", or(s.Gateway, "none")},
			{"allocation_pools", or(pools(s.AllocationPools), "-")}}
	}, nil)
	cmd.AddCommand(create, list, show, k.deleteCmd())
	return cmd
}

func interfaces(s api.RouterSpec) string {
	var out []string
	for _, in := range s.Interfaces {
		out = append(out, in.Subnet)
	}
	return strings.Join(out, ",")
}

func routersCmd(g *globals) *cobra.Command {
	cmd, k := newKindCmd(g, "routers", []string{"router"}, "Routers between a project's subnets and an external network", true)
	var s api.RouterSpec
	var subnetArgs, routeArgs []string
	var noSNAT bool
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a router", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if s.Routes, err = ctl.ParseEach(routeArgs, ctl.ParseRoute); err != nil {
				return err
			}
			for _, sub := range subnetArgs {
				s.Interfaces = append(s.Interfaces, api.RouterInterface{Subnet: sub})
			}
			if noSNAT {
				s.SNAT = new(bool)
			}
			return k.create(cmd, args[0], s)
		},
	}
	f := create.Flags()
	f.StringVar(&s.ExternalNetwork, "external-network", "", "external network for the router's gateway")
	f.StringVar(&s.ExternalIP, "external-ip", "", "gateway address on the external network (default: allocated)")
	f.BoolVar(&noSNAT, "no-snat", false, "no source NAT of the subnets behind the router")
	f.StringSliceVar(&subnetArgs, "subnet", nil, "subnet to attach an interface to (repeatable)")
	f.StringSliceVar(&routeArgs, "route", nil, "static route DEST=NEXTHOP (repeatable)")
	f.StringVar(&s.Host, "host", "", "host to run the router on (admin; default: placed)")

	addIf := modifyCmd(k, "add-interface NAME SUBNET", "Attach a router to a subnet (it takes the subnet's gateway address)", cobra.ExactArgs(2),
		func(s *api.RouterSpec, args []string) error {
			if !slices.Contains(s.Interfaces, api.RouterInterface{Subnet: args[0]}) {
				s.Interfaces = append(s.Interfaces, api.RouterInterface{Subnet: args[0]})
			}
			return nil
		})
	rmIf := modifyCmd(k, "remove-interface NAME SUBNET", "Detach a router from a subnet", cobra.ExactArgs(2),
		func(s *api.RouterSpec, args []string) error {
			i := slices.Index(s.Interfaces, api.RouterInterface{Subnet: args[0]})
			if i < 0 {
				return fmt.Errorf("router has no interface on subnet %q (it has: %s)", args[0], or(interfaces(*s), "none"))
			}
			s.Interfaces = slices.Delete(s.Interfaces, i, i+1)
			return nil
		})
	var gwIP string
	setGW := modifyCmd(k, "set-gateway NAME EXTNET", "Give a router its gateway on an external network", cobra.ExactArgs(2),
		func(s *api.RouterSpec, args []string) error {
			if s.ExternalNetwork != args[0] {
				s.ExternalNetwork, s.ExternalIP = args[0], ""
			}
			if gwIP != "" {
				s.ExternalIP = gwIP
			}
			return nil
		})
	setGW.Flags().StringVar(&gwIP, "external-ip", "", "gateway address (default: allocated, or kept)")
	clearGW := modifyCmd(k, "clear-gateway NAME", "Remove a router's external gateway", cobra.ExactArgs(1),
		func(s *api.RouterSpec, _ []string) error {
			s.ExternalNetwork, s.ExternalIP = "", ""
			return nil
		})
	list := listCmd(k, []string{"EXTERNAL_NETWORK", "EXTERNAL_IP", "SNAT", "HOST", "INTERFACES"}, func(_ api.Resource, s api.RouterSpec) []string {
		return []string{or(s.ExternalNetwork, "-"), or(s.ExternalIP, "-"), fmt.Sprint(s.SNATEnabled()), or(s.Host, "-"), or(interfaces(s), "-")}
	})
	show := showCmd(k, func(s api.RouterSpec) fields {
		return fields{{"host", or(s.Host, "-")}, {"external_network", or(s.ExternalNetwork, "-")}, {"external_ip", or(s.ExternalIP, "-")},
			{"snat", fmt.Sprint(s.SNATEnabled())}, {"interfaces", or(interfaces(s), "-")}, {"routes", or(routes(s.Routes), "-")}}
	}, nil)
	cmd.AddCommand(create, addIf, rmIf, setGW, clearGW, list, show, k.deleteCmd())
	return cmd
}

func floatingIPsCmd(g *globals) *cobra.Command {
	cmd, k := newKindCmd(g, "floatingips", []string{"floatingip", "fip", "fips"}, "External addresses NATed to ports behind a router", true)
	var s api.FloatingIPSpec
	create := &cobra.Command{
		Use: "create NAME", Short: "Allocate a floating IP, optionally associated with a port", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return k.create(cmd, args[0], s) },
	}
	f := create.Flags()
	f.StringVar(&s.ExternalNetwork, "external-network", "", "external network to allocate the address on")
	f.StringVar(&s.IP, "ip", "", "address (default: allocated)")
	f.StringVar(&s.Port, "port", "", "port to associate the address with")
	assoc := modifyCmd(k, "associate NAME PORT", "Associate a floating IP with a port behind a router with a gateway on its network", cobra.ExactArgs(2),
		func(s *api.FloatingIPSpec, args []string) error {
			s.Port = args[0]
			return nil
		})
	disassoc := modifyCmd(k, "disassociate NAME", "Disassociate a floating IP from its port (the address stays allocated)", cobra.ExactArgs(1),
		func(s *api.FloatingIPSpec, _ []string) error {
			s.Port = ""
			return nil
		})
	list := listCmd(k, []string{"EXTERNAL_NETWORK", "IP", "PORT", "ROUTER"}, func(_ api.Resource, s api.FloatingIPSpec) []string {
		return []string{s.ExternalNetwork, s.IP, or(s.Port, "-"), or(s.Router, "-")}
	})
	show := showCmd(k, func(s api.FloatingIPSpec) fields {
		return fields{{"external_network", s.ExternalNetwork}, {"ip", s.IP}, {"port", or(s.Port, "-")}, {"router", or(s.Router, "-")}}
	}, nil)
	cmd.AddCommand(create, assoc, disassoc, list, show, k.deleteCmd())
	return cmd
}
