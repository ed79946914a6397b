// Command strata-lab brings the all-in-one lab up and down: a coordinator
// and several agents on this machine, each agent in its own network
// namespace. `make lab` and `make lab-down` call it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/agent/compute/virttest"
	"github.com/strata-infra/strata/internal/cephtest"
	"github.com/strata-infra/strata/lab"
	"github.com/strata-infra/strata/pkg/pidfile"
)

func main() {
	repo, _ := os.Getwd()
	cfg := lab.Default(repo)
	var demo string
	root := &cobra.Command{Use: "strata-lab", Short: "All-in-one Strata lab on one machine", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().StringVar(&cfg.Dir, "dir", cfg.Dir, "lab state directory")
	root.PersistentFlags().StringVar(&cfg.BinDir, "bin-dir", cfg.BinDir, "directory with the Strata binaries")
	root.PersistentFlags().IntVar(&cfg.Hosts, "hosts", cfg.Hosts, "number of agent hosts")
	root.PersistentFlags().StringSliceVar(&cfg.L2Drivers, "l2-drivers", cfg.L2Drivers, "L2 driver of h1, h2... in order: linuxbridge or ovs (hosts past the list: linuxbridge)")
	up := &cobra.Command{
		Use: "up", Short: "Start (or complete) the lab; safe to run again", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.New(cfg)
			if err != nil {
				return err
			}
			return runUp(cmd.Context(), l, demo)
		},
	}
	up.Flags().StringVar(&demo, "demo", "", "manifest to apply once the hosts are up")
	down := &cobra.Command{
		Use: "down", Short: "Stop every lab process and remove its namespaces, links and state", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.New(cfg)
			if err != nil {
				return err
			}
			if err := l.Down(); err != nil {
				return err
			}
			fmt.Println("lab is down: processes stopped, namespaces, links and state removed")
			return nil
		},
	}
	root.AddCommand(up, down)
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "strata-lab:", err)
		os.Exit(1)
	}
}

func runUp(ctx context.Context, l *lab.Lab, demo string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the lab makes network namespaces and links: run it as root")
	}
	start := time.Now()
	fmt.Printf("starting lab: coordinator + %d agents in namespaces %s .. %s\n", l.Hosts, l.Namespace(1), l.Namespace(l.Hosts))
	if err := l.UpNetwork(); err != nil {
		return err
	}
	// Ceph comes up (≈11 s, most of it the OSD) while the libvirtds probe
	// qemu: the agents need both.
	cephDone := make(chan error, 1)
	if why := cephtest.Available(); l.RunCeph && why != "" {
		l.RunCeph = false
		fmt.Printf("Ceph is off in this lab: %s\n", why)
	}
	if l.RunCeph {
		go func() {
			reused, took, err := l.UpCeph(ctx)
			if err == nil {
				verb := "started"
				if reused {
					verb = "still running, reused"
				}
				fmt.Printf("Ceph (mon, mgr, one bluestore OSD; pools %s, %s) at %s: %s in %s\n",
					lab.VolumesPool, lab.ImagesPool, l.Ceph.MonHost, verb, took.Round(100*time.Millisecond))
			}
			cephDone <- err
		}()
	} else {
		cephDone <- nil
	}
	image, noCompute := startCompute(l)
	if noCompute != "" {
		fmt.Printf("compute is off in this lab: %s\n", noCompute)
	}
	if err := <-cephDone; err != nil {
		return err
	}
	if err := l.Up(ctx); err != nil {
		return err
	}
	if _, err := l.WaitStatus(ctx, 60*time.Second, "hosts alive and converged", lab.AllAliveAndConverged(l.Hosts)); err != nil {
		return fmt.Errorf("%w (logs in %s)", err, filepath.Join(l.Dir, "logs"))
	}
	fmt.Printf("%d hosts alive and converged in %s\n", l.Hosts, time.Since(start).Round(time.Millisecond))
	tok, err := l.AdminToken()
	if err != nil {
		return err
	}
	ctl := func(args ...string) error {
		cmd := exec.Command(filepath.Join(l.BinDir, "stratactl"), args...)
		cmd.Env = append(os.Environ(), "STRATA_ENDPOINT="+l.OperatorEndpoint(), "STRATA_TOKEN="+tok, "STRATA_CA_FILE="+l.CAFile())
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		return cmd.Run()
	}
	if demo != "" {
		fmt.Printf("\n$ stratactl apply -f %s\n", demo)
		if err := ctl("apply", "-f", demo); err != nil {
			return err
		}
		if _, err := l.WaitStatus(ctx, 60*time.Second, "fleet converged on the demo", lab.AllAliveAndConverged(l.Hosts)); err != nil {
			return fmt.Errorf("%w (logs in %s)", err, filepath.Join(l.Dir, "logs"))
		}
	}
	steps := [][]string{{"status"}, {"hosts", "list"}}
	for i := 1; i <= l.Hosts; i++ {
		if l.L2Driver(i) == lab.DriverOVS {
			// The first Open vSwitch host: its driver and datapath.
			steps = append(steps, []string{"hosts", "show", l.HostName(i)})
			break
		}
	}
	steps = append(steps, []string{"projects", "list"})
	for _, args := range steps {
		fmt.Printf("\n$ stratactl %s\n", joinArgs(args))
		if err := ctl(args...); err != nil {
			return err
		}
	}
	fmt.Printf("\nTenant traffic (each endpoint is a namespace; try: ip netns exec <namespace> ping <address>):\n")
	if err := l.DemoTraffic(ctx, os.Stdout); err != nil {
		return err
	}
	fmt.Printf("\nCompiled firewalls (router firewall chains and security group tables as the kernel holds them: verdict maps, not rule lists):\n")
	if err := l.DemoFirewalls(ctx, os.Stdout); err != nil {
		return err
	}
	if image != "" {
		fmt.Printf("\nScheduling (h1 and h2 in zone az1; h3 in az2 and, by its agent config, in aggregate fast):\n")
		if err := l.DemoScheduling(os.Stdout, image); err != nil {
			return err
		}
	}
	if image != "" && l.Ceph != nil {
		fmt.Printf("\nCeph (%s; ceph -c %s -s): an image imported, an instance booting from a copy-on-write clone, a volume hot-plugged into it, a snapshot and a clone:\n",
			l.Ceph.MonHost, l.CephConf())
		if err := l.DemoStorage(ctx, os.Stdout, image); err != nil {
			return err
		}
		fmt.Printf("\nkrbd volumes and the host SSD cache (device-mapper, which this kernel lacks):\n")
		if err := l.DemoCache(ctx, os.Stdout); err != nil {
			return err
		}
	}
	if demo != "" {
		fmt.Printf("\nThe contract (what some host could not apply is refused at the API, naming the field):\n")
		if err := l.DemoContract(ctx, os.Stdout); err != nil {
			return err
		}
	}
	fmt.Printf("\nWho is kept out (TLS with the lab's CA, the gossip key and host identities, port security):\n")
	if err := l.DemoSecurity(ctx, os.Stdout); err != nil {
		return err
	}
	if image != "" && l.Ceph != nil {
		fmt.Printf("\nMaintenance (the storage demo's guest moves live off its host, which is drained, reported empty and enabled again; 5–20 s under TCG, longer on a busy machine):\n")
		if err := l.DemoMaintenance(ctx, os.Stdout); err != nil {
			return err
		}
	}
	fmt.Printf("\nThe lab is running (TLS; pin its CA). To use it:\n  export STRATA_ENDPOINT=%s\n  export STRATA_TOKEN_FILE=%s\n  export STRATA_CA_FILE=%s\n%s  bin/stratactl status\nLogs: %s   Stop: make lab-down\n",
		l.OperatorEndpoint(), filepath.Join(l.Dir, "coordinator", "admin.token"), l.CAFile(), cephExports(l), filepath.Join(l.Dir, "logs"))
	return nil
}

func joinArgs(a []string) string {
	s := ""
	for i, x := range a {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s
}

// startCompute gives each lab host a libvirtd of its own (kept under the
// lab's directory: lab-down stops it by its pid file) and turns compute
// on in its agent, with the zones and aggregates of the scheduling demo.
// It returns the guest image's path, or why compute stays off (no
// libvirtd or qemu here, the guest does not build); the rest of the lab
// runs either way. A libvirtd still running from an earlier `up` is kept.
func startCompute(l *lab.Lab) (image, why string) {
	if part, reason := lab.LibvirtAvailable(); part != "" {
		return "", part + ": " + reason
	}
	repo, _ := os.Getwd()
	g, err := lab.BuildGuest(repo, l.Dir)
	if err != nil {
		return "", err.Error()
	}
	lvs := map[int]*lab.Libvirtd{}
	for i := 1; i <= l.Hosts; i++ {
		dir := filepath.Join(l.Dir, fmt.Sprintf("lv%d", i))
		if pidfile.Alive(filepath.Join(dir, "libvirtd.pid")) {
			d, err := virttest.New(dir, l.Namespace(i))
			if err != nil {
				return "", err.Error()
			}
			lvs[i] = &lab.Libvirtd{Daemon: d, Host: i}
			continue
		}
		lv, err := l.StartLibvirtd(i, dir)
		if err != nil {
			return "", err.Error()
		}
		lvs[i] = lv
	}
	mig, err := lab.MigrationArgs(filepath.Join(l.Dir, "libvirt-peers"), lvs, l.HostName)
	if err != nil {
		return "", err.Error()
	}
	l.AgentExtraArgs = func(i int) []string {
		return append(append(lab.ComputeArgs(lvs[i], g, 5*time.Second), lab.SchedulingZones(i)...), mig...)
	}
	return g.Image, ""
}

// cephExports are the shell lines that point stratactl images import at
// the lab's Ceph; none without it.
func cephExports(l *lab.Lab) string {
	s := ""
	for _, e := range l.CephEnv() {
		s += "  export " + e + "\n"
	}
	return s
}
