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

	"github.com/strata-infra/strata/lab"
)

func main() {
	repo, _ := os.Getwd()
	cfg := lab.Default(repo)
	var demo string
	root := &cobra.Command{Use: "strata-lab", Short: "All-in-one Strata lab on one machine", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().StringVar(&cfg.Dir, "dir", cfg.Dir, "lab state directory")
	root.PersistentFlags().StringVar(&cfg.BinDir, "bin-dir", cfg.BinDir, "directory with the Strata binaries")
	root.PersistentFlags().IntVar(&cfg.Hosts, "hosts", cfg.Hosts, "number of agent hosts")
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
	fmt.Printf("\nThe lab is running (TLS; pin its CA). To use it:\n  export STRATA_ENDPOINT=%s\n  export STRATA_TOKEN_FILE=%s\n  export STRATA_CA_FILE=%s\n  bin/stratactl status\nLogs: %s   Stop: make lab-down\n",
		l.OperatorEndpoint(), filepath.Join(l.Dir, "coordinator", "admin.token"), l.CAFile(), filepath.Join(l.Dir, "logs"))
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
