package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/coordinator/ctl"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

// putResource creates (POST) or replaces (PUT) one resource and prints it.
func putResource(cmd *cobra.Command, g *globals, plural, project, name string, spec any, create bool) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	buf, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	var pr api.PutResult
	method, path := http.MethodPut, apiclient.ResourcePath(plural, project, name)
	if create {
		method, path = http.MethodPost, apiclient.ResourcePath(plural, project, "")
	}
	if err := c.Do(cmd.Context(), method, path, api.ResourceRequest{Name: name, Spec: buf}, &pr); err != nil {
		return err
	}
	if err := g.print(cmd, pr, ctl.Table{Header: []string{"NAME", "CHANGED", "EPOCH"},
		Rows: [][]string{{name, fmt.Sprint(pr.Changed), fmt.Sprint(pr.Epoch)}}}); err != nil {
		return err
	}
	return g.waitApplied(cmd, c, apiclient.ResourcePath(plural, project, name), pr.Epoch)
}

func deleteResourceCmd(g *globals, plural string, project *string) *cobra.Command {
	return &cobra.Command{
		Use: "delete NAME", Short: "Delete " + article(strings.TrimSuffix(plural, "s")), Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			p := ""
			if project != nil {
				p = *project
			}
			var dr api.DeleteResult
			if err := c.Do(cmd.Context(), http.MethodDelete, apiclient.ResourcePath(plural, p, args[0]), nil, &dr); err != nil {
				return err
			}
			if err := g.print(cmd, dr, ctl.Table{Header: []string{"NAME", "DELETED", "EPOCH"}, Rows: [][]string{{args[0], fmt.Sprint(dr.Deleted), fmt.Sprint(dr.Epoch)}}}); err != nil {
				return err
			}
			return g.waitApplied(cmd, c, "", dr.Epoch)
		},
	}
}

// article puts "a" or "an" before a noun.
func article(noun string) string {
	if strings.ContainsRune("aeiou", rune(noun[0])) {
		return "an " + noun
	}
	return "a " + noun
}

func listResources(ctx context.Context, g *globals, plural, project string) ([]api.Resource, error) {
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	var rs []api.Resource
	err = c.Do(ctx, http.MethodGet, apiclient.ResourcePath(plural, project, ""), nil, &rs)
	return rs, err
}

func flavorsCmd(g *globals) *cobra.Command {
	cmd, k := newKindCmd(g, "flavors", []string{"flavor"}, "Instance sizes (admin)", false)
	var s api.FlavorSpec
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a flavor", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return k.create(cmd, args[0], s) },
	}
	create.Flags().IntVar(&s.VCPUs, "vcpus", 1, "virtual CPUs")
	create.Flags().IntVar(&s.RAMMiB, "ram", 512, "RAM in MiB")
	create.Flags().IntVar(&s.DiskGiB, "disk", 1, "root disk in GiB")
	create.Flags().StringToStringVar(&s.ExtraSpecs, "extra-spec", nil, "extra spec key=value (repeatable)")
	list := listCmd(k, []string{"VCPUS", "RAM_MIB", "DISK_GIB", "EXTRA_SPECS"}, func(_ api.Resource, f api.FlavorSpec) []string {
		var extra []string
		for k, v := range f.ExtraSpecs {
			extra = append(extra, k+"="+v)
		}
		sort.Strings(extra)
		return []string{fmt.Sprint(f.VCPUs), fmt.Sprint(f.RAMMiB), fmt.Sprint(f.DiskGiB), strings.Join(extra, ",")}
	})
	cmd.AddCommand(create, list, k.deleteCmd())
	return cmd
}

func imagesCmd(g *globals) *cobra.Command {
	cmd, k := newKindCmd(g, "images", []string{"image"}, "Bootable disk images (admin)", false)
	var s api.ImageSpec
	create := &cobra.Command{
		Use: "create NAME", Short: "Register a qcow2 or raw image file present on the hosts", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return k.create(cmd, args[0], s) },
	}
	create.Flags().StringVar(&s.Format, "format", "qcow2", "qcow2 or raw")
	create.Flags().StringVar(&s.Path, "path", "", "absolute path of the image file on the hosts")
	create.Flags().StringVar(&s.Architecture, "architecture", "", "architecture its instances need (x86_64, aarch64; default any)")
	create.Flags().StringVar(&s.HypervisorType, "hypervisor-type", "", "hypervisor its instances need (kvm, qemu; default any)")
	list := listCmd(k, []string{"FORMAT", "PATH", "POOL", "SIZE"}, func(_ api.Resource, s api.ImageSpec) []string {
		size := ""
		if s.SizeBytes > 0 {
			size = fmt.Sprint(s.SizeBytes)
		}
		return []string{s.Format, s.Path, s.Pool, size}
	})
	cmd.AddCommand(create, list, imageImportCmd(g), k.deleteCmd())
	return cmd
}

func instancesCmd(g *globals) *cobra.Command {
	var project string
	cmd := &cobra.Command{Use: "instances", Aliases: []string{"instance"}, Short: "Virtual machines of a project"}
	cmd.PersistentFlags().StringVarP(&project, "project", "p", "", "project (env STRATA_PROJECT; else the context's)")
	needProject := func() error {
		if project == "" {
			var err error
			if project, err = g.project(); err != nil {
				return err
			}
		}
		if project == "" {
			return fmt.Errorf("--project is required (or set STRATA_PROJECT, or a context's project)")
		}
		return nil
	}
	cmd.AddCommand(instanceCreateCmd(g, &project, needProject))
	list := &cobra.Command{
		Use: "list", Short: "List instances with their state and host", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needProject(); err != nil {
				return err
			}
			rs, err := listResources(cmd.Context(), g, "instances", project)
			if err != nil {
				return err
			}
			t := ctl.Table{Header: []string{"NAME", "FLAVOR", "IMAGE", "WANTED", "STATE", "HOST", "ADDRESSES"}}
			for _, r := range rs {
				s, st, d := instanceParts(r)
				t.Rows = append(t.Rows, []string{r.Name, s.Flavor, s.Image, s.Power, st, s.Host, addresses(d)})
			}
			return g.print(cmd, rs, t)
		},
	}
	show := &cobra.Command{
		Use: "show NAME", Short: "Show an instance: state, host, addresses, console log tail", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needProject(); err != nil {
				return err
			}
			r, err := getInstance(cmd.Context(), g, project, args[0])
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.print(cmd, r, ctl.Table{})
			}
			printInstance(cmd, r)
			return nil
		},
	}
	power := func(use, short string, edit func(*api.InstanceSpec)) *cobra.Command {
		return &cobra.Command{
			Use: use + " NAME", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := needProject(); err != nil {
					return err
				}
				return modify(cmd, g, "instances", project, args[0], func(s *api.InstanceSpec) error { edit(s); return nil })
			},
		}
	}
	cmd.AddCommand(list, show,
		// A start is always a change (starts grows), so it also starts a
		// guest that stopped outside Strata while it was wanted running.
		power("start", "Start an instance", func(s *api.InstanceSpec) { s.Power = api.PowerRunning; s.Starts++ }),
		power("stop", "Stop an instance (ACPI power button, then power off)", func(s *api.InstanceSpec) { s.Power = api.PowerStopped }),
		power("reboot", "Reboot a running instance (hard reset)", func(s *api.InstanceSpec) { s.Reboots++ }),
		deleteResourceCmd(g, "instances", &project))
	cmd.AddCommand(moveCmds(g, &project, needProject)...)
	cmd.AddCommand(evacuateCmd(g, &project, needProject))
	cmd.AddCommand(volumeAttachCmds(g, &project, needProject)...)
	return cmd
}

// volumeAttachCmds hot-plug volumes into an instance and out again (a
// read-modify-write of spec.volumes; the instance's host attaches).
func volumeAttachCmds(g *globals, project *string, needProject func() error) []*cobra.Command {
	edit := func(use, short string, change func(s *api.InstanceSpec, vol string) error) *cobra.Command {
		return &cobra.Command{
			Use: use + " INSTANCE VOLUME", Short: short, Args: cobra.ExactArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := needProject(); err != nil {
					return err
				}
				return modify(cmd, g, "instances", *project, args[0], func(s *api.InstanceSpec) error { return change(s, args[1]) })
			},
		}
	}
	return []*cobra.Command{
		edit("attach-volume", "Attach a volume to an instance (hot-plugged while it runs)", func(s *api.InstanceSpec, v string) error {
			if slices.Contains(s.Volumes, v) {
				return fmt.Errorf("volume %q is attached to this instance already", v)
			}
			s.Volumes = append(s.Volumes, v)
			return nil
		}),
		edit("detach-volume", "Detach a volume from an instance (hot-unplugged while it runs)", func(s *api.InstanceSpec, v string) error {
			i := slices.Index(s.Volumes, v)
			if i < 0 {
				return fmt.Errorf("volume %q is not attached to this instance", v)
			}
			s.Volumes = slices.Delete(s.Volumes, i, i+1)
			return nil
		}),
	}
}

func instanceCreateCmd(g *globals, project *string, needProject func() error) *cobra.Command {
	var s api.InstanceSpec
	var userData, keyFile string
	var stopped bool
	create := &cobra.Command{
		Use: "create NAME", Short: "Create an instance from a flavor and an image on networks or ports", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := needProject(); err != nil {
				return err
			}
			if userData != "" {
				b, err := os.ReadFile(userData)
				if err != nil {
					return err
				}
				if !utf8.Valid(b) {
					return fmt.Errorf("user data %s is not text (UTF-8); binary user data is not supported", userData)
				}
				s.UserData = string(b)
			}
			if keyFile != "" {
				b, err := os.ReadFile(keyFile)
				if err != nil {
					return err
				}
				s.SSHKey = strings.TrimSpace(string(b))
			}
			if stopped {
				s.Power = api.PowerStopped
			}
			return putResource(cmd, g, "instances", *project, args[0], s, true)
		},
	}
	f := create.Flags()
	f.StringVar(&s.Flavor, "flavor", "", "flavor name")
	f.StringVar(&s.Image, "image", "", "image name (an image in Ceph: the root disk is a copy-on-write clone of it)")
	f.StringVar(&s.BootVolume, "boot-volume", "", "volume to boot from instead of an image")
	f.StringSliceVar(&s.Volumes, "volume", nil, "volume to attach (repeatable)")
	f.StringSliceVar(&s.Networks, "network", nil, "network to put a new port on (repeatable)")
	f.StringSliceVar(&s.Ports, "port", nil, "existing port to use (repeatable)")
	f.StringVar(&userData, "user-data", "", "file with the cloud-init user data (text, at most 64 KiB)")
	f.StringVar(&s.SSHKey, "ssh-key", "", "SSH public key, \"type key [comment]\"")
	f.StringVar(&keyFile, "ssh-key-file", "", "file with the SSH public key")
	f.StringVar(&s.Host, "host", "", "host to run on (admin only; default: the scheduler's choice)")
	f.StringVar(&s.Zone, "zone", "", "availability zone to run in")
	f.StringVar(&s.Group, "group", "", "server group whose policy places it")
	f.BoolVar(&stopped, "stopped", false, "create it stopped")
	return create
}

func getInstance(ctx context.Context, g *globals, project, name string) (api.Resource, error) {
	c, err := g.client()
	if err != nil {
		return api.Resource{}, err
	}
	var r api.Resource
	err = c.Do(ctx, http.MethodGet, apiclient.ResourcePath("instances", project, name), nil, &r)
	return r, err
}

// instanceParts decodes an instance's spec, observed state and detail.
func instanceParts(r api.Resource) (api.InstanceSpec, string, api.InstanceDetail) {
	var s api.InstanceSpec
	_ = json.Unmarshal(r.Spec, &s)
	var d api.InstanceDetail
	state := "pending"
	if r.Status != nil {
		state = r.Status.State
		_ = json.Unmarshal(r.Status.Detail, &d)
		if r.Status.Epoch < r.Epoch {
			state += " (converging)"
		}
	}
	return s, state, d
}

func addresses(d api.InstanceDetail) string {
	var out []string
	for _, a := range d.Addresses {
		out = append(out, a.Network+"="+strings.Join(a.IPs, ","))
	}
	return strings.Join(out, " ")
}

func printInstance(cmd *cobra.Command, r api.Resource) {
	s, state, d := instanceParts(r)
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "name:        %s/%s\n", r.Project, r.Name)
	fmt.Fprintf(w, "state:       %s (wanted %s)\n", state, s.Power)
	if r.Status != nil && r.Status.Message != "" {
		fmt.Fprintf(w, "message:     %s\n", r.Status.Message)
	}
	fmt.Fprintf(w, "host:        %s\n", s.Host)
	if p := r.Placement; p != nil {
		fmt.Fprintf(w, "placement:   %s: %s (%s)\n", p.State, p.Message, p.Updated.Format(time.RFC3339))
	}
	if len(s.BuildFailures) > 0 {
		fmt.Fprintf(w, "build failed on: %s\n", strings.Join(s.BuildFailures, ", "))
	}
	fmt.Fprintf(w, "flavor:      %s\nimage:       %s\n", s.Flavor, s.Image)
	if root := s.BootVolume + s.RootVolume; root != "" {
		fmt.Fprintf(w, "root volume: %s\n", root)
	}
	if len(s.Volumes) > 0 {
		fmt.Fprintf(w, "volumes:     %s\n", strings.Join(s.Volumes, ", "))
	}
	fmt.Fprintf(w, "domain:      %s (%s)\n", d.Domain, d.DomainType)
	fmt.Fprintf(w, "epoch:       %d\n", r.Epoch)
	for _, a := range d.Addresses {
		fmt.Fprintf(w, "address:     %s %s %s (port %s)\n", a.Network, strings.Join(a.IPs, ","), a.MAC, a.Port)
	}
	if d.ConsoleTail != "" {
		lines := strings.Split(strings.TrimRight(d.ConsoleTail, "\n"), "\n")
		if len(lines) > 20 {
			lines = lines[len(lines)-20:]
		}
		fmt.Fprintf(w, "console log (tail):\n  %s\n", strings.Join(lines, "\n  "))
	}
}
