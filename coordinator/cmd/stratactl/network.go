package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/coordinator/ctl"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

// kindCmds builds the commands of one kind: where its resources live
// (a project's collection, or the global one) and how they print.
type kindCmds struct {
	g       *globals
	plural  string
	project *string // nil for a global kind
}

// newKindCmd makes a kind's parent command; a project-scoped kind gets
// -p/--project (env STRATA_PROJECT), checked before any subcommand runs.
func newKindCmd(g *globals, plural string, aliases []string, short string, scoped bool) (*cobra.Command, *kindCmds) {
	k := &kindCmds{g: g, plural: plural}
	cmd := &cobra.Command{Use: plural, Aliases: aliases, Short: short}
	if scoped {
		k.project = new(string)
		cmd.PersistentFlags().StringVarP(k.project, "project", "p", "", "project (env STRATA_PROJECT; else the context's)")
	}
	// Checked before anything is sent, so a typo changes nothing.
	cmd.PersistentPreRunE = func(*cobra.Command, []string) error {
		if err := ctl.CheckFormat(g.output); err != nil {
			return err
		}
		if scoped && *k.project == "" {
			var err error
			if *k.project, err = g.project(); err != nil {
				return err
			}
		}
		if scoped && *k.project == "" {
			return errors.New("--project is required (or set STRATA_PROJECT, or a context's project)")
		}
		return nil
	}
	return cmd, k
}

func (k *kindCmds) proj() string {
	if k.project == nil {
		return ""
	}
	return *k.project
}

func (k *kindCmds) singular() string { return strings.TrimSuffix(k.plural, "s") }

func (k *kindCmds) get(cmd *cobra.Command, name string) (api.Resource, error) {
	c, err := k.g.client()
	if err != nil {
		return api.Resource{}, err
	}
	var r api.Resource
	err = c.Do(cmd.Context(), http.MethodGet, apiclient.ResourcePath(k.plural, k.proj(), name), nil, &r)
	return r, err
}

// create POSTs a new resource: an existing one of that name is a conflict.
func (k *kindCmds) create(cmd *cobra.Command, name string, spec any) error {
	return putResource(cmd, k.g, k.plural, k.proj(), name, spec, true)
}

func (k *kindCmds) deleteCmd() *cobra.Command { return deleteResourceCmd(k.g, k.plural, k.project) }

// modifyCmd is a read-modify-write command: GET the resource, let edit
// change its spec (args[0] is the name, edit gets the rest), PUT it back
// with If-Match on the version read. The API is idempotent, so an edit that
// changes nothing reports "unchanged"; a change by someone else in between
// is never overwritten: the PUT fails (412) and the command reads again
// and re-applies the edit. The spec is decoded strictly: a field this
// stratactl does not know would be lost by the PUT, so it refuses instead.
func modifyCmd[T any](k *kindCmds, use, short string, args cobra.PositionalArgs, edit func(s *T, args []string) error) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: args,
		RunE: func(cmd *cobra.Command, args []string) error {
			return modify(cmd, k.g, k.plural, k.proj(), args[0], func(s *T) error { return edit(s, args[1:]) })
		},
	}
}

// modify runs one read-modify-write (apiclient.Modify) and prints it.
func modify[T any](cmd *cobra.Command, g *globals, plural, project, name string, edit func(s *T) error) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	pr, err := c.Modify(cmd.Context(), apiclient.ResourcePath(plural, project, name), func(r api.Resource) (json.RawMessage, error) {
		var s T
		dec := json.NewDecoder(bytes.NewReader(r.Spec))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("%s %q: the coordinator's spec does not decode (%v); is stratactl older than the coordinator?", strings.TrimSuffix(plural, "s"), name, err)
		}
		if err := edit(&s); err != nil {
			return nil, err
		}
		return json.Marshal(s)
	})
	if err != nil {
		return err
	}
	result := "updated"
	if !pr.Changed {
		result = "unchanged"
	}
	if err := g.print(cmd, pr, ctl.Table{Header: []string{"NAME", "RESULT", "EPOCH"}, Rows: [][]string{{name, result, fmt.Sprint(pr.Epoch)}}}); err != nil {
		return err
	}
	return g.waitApplied(cmd, c, apiclient.ResourcePath(plural, project, name), pr.Epoch)
}

// listCmd lists the kind's resources: JSON is the resources as the API
// has them, the table one row per resource.
func listCmd[T any](k *kindCmds, header []string, row func(r api.Resource, s T) []string) *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List " + k.plural, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rs, err := listResources(cmd.Context(), k.g, k.plural, k.proj())
			if err != nil {
				return err
			}
			t := ctl.Table{Header: append([]string{"NAME"}, header...)}
			for _, r := range rs {
				var s T
				_ = json.Unmarshal(r.Spec, &s)
				t.Rows = append(t.Rows, append([]string{r.Name}, row(r, s)...))
			}
			return k.g.print(cmd, rs, t)
		},
	}
}

// showCmd shows one resource: JSON is the resource; the table its name,
// epoch, observed status and the fields describe gives, then what extra
// (if not nil) prints.
func showCmd[T any](k *kindCmds, describe func(s T) fields, extra func(w io.Writer, s T)) *cobra.Command {
	return &cobra.Command{
		Use: "show NAME", Short: "Show a " + k.singular(), Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := k.get(cmd, args[0])
			if err != nil {
				return err
			}
			if k.g.output == "json" {
				return k.g.print(cmd, r, ctl.Table{})
			}
			var s T
			if err := json.Unmarshal(r.Spec, &s); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			name := r.Name
			if r.Project != "" {
				name = r.Project + "/" + r.Name
			}
			f := fields{{"name", name}, {"epoch", fmt.Sprint(r.Epoch)}}
			if st := r.Status; st != nil && len(r.Hosts) == 0 {
				state := st.State
				if st.Epoch < r.Epoch {
					state += " (converging)"
				}
				f = append(f, [2]string{"state", state + " on " + st.Host})
				if st.Message != "" {
					f = append(f, [2]string{"message", st.Message})
				}
			}
			append(f, describe(s)...).print(w)
			if extra != nil {
				extra(w, s)
			}
			if len(r.Hosts) > 0 {
				table(w, "hosts", hostStates(r.Hosts))
			}
			return nil
		},
	}
}

// hostStates is a resource's state on each host, with the host's error.
func hostStates(hs []api.ResourceStatus) ctl.Table {
	t := ctl.Table{Header: []string{"HOST", "STATE", "EPOCH", "ERROR"}}
	for _, h := range hs {
		t.Rows = append(t.Rows, []string{h.Host, h.State, fmt.Sprint(h.Epoch), or(h.Message, "-")})
	}
	return t
}

// fields are "key: value" lines, aligned.
type fields [][2]string

func (f fields) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for _, kv := range f {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	tw.Flush()
}

// table prints a table indented under a show's fields.
func table(w io.Writer, title string, t ctl.Table) {
	fmt.Fprintf(w, "%s:\n", title)
	if len(t.Rows) == 0 {
		fmt.Fprintln(w, "  (none)")
		return
	}
	var buf bytes.Buffer
	_ = ctl.Print(&buf, "table", nil, t)
	for _, line := range strings.SplitAfter(strings.TrimRight(buf.String(), "\n"), "\n") {
		fmt.Fprint(w, "  "+line)
	}
	fmt.Fprintln(w)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func pools(ps []api.IPRange) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Start+"-"+p.End)
	}
	return strings.Join(out, ",")
}

func routes(rs []api.HostRoute) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Destination+"="+r.NextHop)
	}
	return strings.Join(out, ",")
}

func fixedIPs(fs []api.FixedIP) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.IP)
	}
	return strings.Join(out, ",")
}

func networksCmd(g *globals) *cobra.Command {
	cmd, k := newKindCmd(g, "networks", []string{"network", "net"}, "Tenant L2 networks (VXLAN) of a project", true)
	var s api.NetworkSpec
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a network", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return k.create(cmd, args[0], s) },
	}
	f := create.Flags()
	f.StringVar(&s.Type, "type", "", "overlay: vxlan (default) or gre (hosts on the ovs driver)")
	f.Uint32Var(&s.SegmentationID, "segmentation-id", 0, "VXLAN ID or GRE key (admin; default: allocated)")
	f.IntVar(&s.MTU, "mtu", 0, "MTU (default: the underlay MTU less 50)")
	f.StringVar(&s.DHCPHost, "dhcp-host", "", "host to run the network's DHCP server on (default: placed)")
	list := listCmd(k, []string{"TYPE", "VNI", "MTU", "DHCP_HOST"}, func(_ api.Resource, s api.NetworkSpec) []string {
		return []string{s.Type, fmt.Sprint(s.SegmentationID), fmt.Sprint(s.MTU), or(s.DHCPHost, "-")}
	})
	show := showCmd(k, func(s api.NetworkSpec) fields {
		return fields{{"type", s.Type}, {"segmentation_id", fmt.Sprint(s.SegmentationID)}, {"mtu", fmt.Sprint(s.MTU)},
			{"dhcp_host", or(s.DHCPHost, "-")}}
	}, nil)
	cmd.AddCommand(create, list, show, k.deleteCmd())
	return cmd
}

func subnetsCmd(g *globals) *cobra.Command {
	cmd, k := newKindCmd(g, "subnets", []string{"subnet"}, "IPv4/IPv6 ranges of a project's networks", true)
	var s api.SubnetSpec
	var poolArgs, routeArgs []string
	var noDHCP bool
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a subnet on a network", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if s.AllocationPools, err = ctl.ParseEach(poolArgs, ctl.ParsePool); err != nil {
				return err
			}
			if s.HostRoutes, err = ctl.ParseEach(routeArgs, ctl.ParseRoute); err != nil {
				return err
			}
			if noDHCP {
				s.DHCP = new(bool)
			}
			return k.create(cmd, args[0], s)
		},
	}
	f := create.Flags()
	f.StringVar(&s.Network, "network", "", "network the subnet is on")
	f.StringVar(&s.CIDR, "cidr", "", "address range, e.g. 10.1.0.0/24")
	f.StringVar(&s.Gateway, "gateway", "", `gateway address, or "none" (default: the first address)`)
	f.StringSliceVar(&poolArgs, "pool", nil, "allocation pool START-END (repeatable; default: the whole range)")
	f.StringSliceVar(&s.DNSServers, "dns", nil, "DNS server handed out by DHCP (repeatable)")
	f.StringSliceVar(&routeArgs, "route", nil, "host route DEST=NEXTHOP handed out by DHCP (repeatable)")
	f.BoolVar(&noDHCP, "no-dhcp", false, "no DHCP server for this subnet")
	list := listCmd(k, []string{"NETWORK", "CIDR", "GATEWAY", "DHCP"}, func(_ api.Resource, s api.SubnetSpec) []string {
		return []string{s.Network, s.CIDR, or(s.Gateway, "none"), fmt.Sprint(s.DHCPEnabled())}
	})
	show := showCmd(k, func(s api.SubnetSpec) fields {
		return fields{{"network", s.Network}, {"cidr", s.CIDR}, {"gateway", or(s.Gateway, "none")}, {"dhcp", fmt.Sprint(s.DHCPEnabled())},
			{"allocation_pools", or(pools(s.AllocationPools), "-")}, {"dns_servers", or(strings.Join(s.DNSServers, ","), "-")},
			{"host_routes", or(routes(s.HostRoutes), "-")}}
	}, nil)
	cmd.AddCommand(create, list, show, k.deleteCmd())
	return cmd
}

func portsCmd(g *globals) *cobra.Command {
	cmd, k := newKindCmd(g, "ports", []string{"port"}, "NICs on a project's networks", true)
	var s api.PortSpec
	var ipArgs []string
	var noPortSecurity bool
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a port (MAC and addresses allocated unless given)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if s.FixedIPs, err = ctl.ParseEach(ipArgs, ctl.ParseFixedIP); err != nil {
				return err
			}
			if noPortSecurity {
				s.PortSecurity = new(bool)
			}
			return k.create(cmd, args[0], s)
		},
	}
	f := create.Flags()
	f.StringVar(&s.Network, "network", "", "network the port is on")
	f.StringVar(&s.Host, "host", "", "host to bind the port to")
	f.StringVar(&s.MAC, "mac", "", "MAC address (default: allocated)")
	f.StringSliceVar(&ipArgs, "ip", nil, "address: IP, SUBNET=IP, or SUBNET= for the next free one (repeatable; default: one per subnet)")
	f.StringVar(&s.Owner, "owner", "", `"endpoint" plugs the port into a namespace on --host`)
	f.StringVar(&s.DNSName, "dns-name", "", "DNS name (default: the port's name)")
	f.StringSliceVar(&s.SecurityGroups, "security-group", nil, "security group (repeatable; default: the project's default group)")
	f.BoolVar(&noPortSecurity, "no-port-security", false, "turn security groups off for this port")
	list := listCmd(k, []string{"NETWORK", "MAC", "IPS", "HOST", "OWNER"}, func(_ api.Resource, s api.PortSpec) []string {
		return []string{s.Network, s.MAC, fixedIPs(s.FixedIPs), or(s.Host, "-"), or(s.Owner, "-")}
	})
	show := showCmd(k, func(s api.PortSpec) fields {
		groups := strings.Join(s.SecurityGroups, ",")
		if !s.PortSecurityEnabled() {
			groups = "- (port security off)"
		}
		f := fields{{"network", s.Network}, {"mac", s.MAC}}
		for _, ip := range s.FixedIPs {
			f = append(f, [2]string{"fixed_ip", ip.IP + " (subnet " + ip.Subnet + ")"})
		}
		return append(f, fields{{"host", or(s.Host, "-")}, {"owner", or(s.Owner, "-")}, {"dns_name", s.DNSName},
			{"security_groups", or(groups, "default")}}...)
	}, nil)
	cmd.AddCommand(create, list, show, k.deleteCmd())
	return cmd
}
