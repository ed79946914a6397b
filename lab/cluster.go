package lab

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/strata-infra/strata/internal/cephtest"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
	"github.com/strata-infra/strata/pkg/gossip"
	"github.com/strata-infra/strata/pkg/netspec"
	"github.com/strata-infra/strata/pkg/pidfile"
)

func (l *Lab) coordinatorProc() proc {
	return proc{name: "coordinator", bin: l.bin("strata-coordinator")}
}
func (l *Lab) agentProc(i int) proc { return proc{name: l.HostName(i), bin: l.agentBin(i)} }

// Up brings the lab up: network, gossip key, coordinator, agent token,
// agents. Whatever is already up is left running.
func (l *Lab) Up(ctx context.Context) error {
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return err
	}
	// Traversable, not listable: each agent's dnsmasq drops to an
	// unprivileged user that must reach its files under hN/dhcp.
	if err := os.Chmod(l.Dir, 0o711); err != nil {
		return err
	}
	if err := l.UpNetwork(); err != nil {
		return err
	}
	if l.RunCeph && l.Ceph == nil {
		if _, _, err := l.UpCeph(ctx); err != nil {
			return err
		}
	}
	for i := 1; i <= l.Hosts; i++ {
		if err := l.cephRoute(i); err != nil {
			return err
		}
	}
	keyFile := filepath.Join(l.Dir, "gossip.key")
	if _, err := os.Stat(keyFile); err != nil {
		key, err := gossip.GenerateKey()
		if err != nil {
			return err
		}
		if err := gossip.WriteKeyFile(keyFile, key); err != nil {
			return err
		}
	}
	if err := l.StartCoordinator(ctx); err != nil {
		return err
	}
	for i := 1; i <= l.Hosts; i++ {
		if err := l.ensureAgentToken(ctx, i); err != nil {
			return err
		}
		if err := l.StartAgent(i); err != nil {
			return err
		}
	}
	return nil
}

// StartCoordinator starts the coordinator and waits for its API.
func (l *Lab) StartCoordinator(ctx context.Context) error {
	b := l.BridgeAddr().String()
	argv := []string{l.bin("strata-coordinator"), "--config=",
		"--name", "coordinator", "--data-dir", filepath.Join(l.Dir, "coordinator"),
		"--listen", b + ":7070", "--api-url", l.Endpoint(),
		"--gossip-bind", b + ":7946", "--gossip-profile", "local",
		"--gossip-key-file", filepath.Join(l.Dir, "gossip.key"),
		"--retain-deltas", fmt.Sprint(l.RetainDeltas),
		"--metrics-addr", b + ":9465", "--log-format", "json"}
	if l.LoopbackAPI {
		argv = append(argv, "--listen", "127.0.0.1:7070")
	}
	argv = append(argv, l.CoordinatorExtraArgs...)
	if _, err := l.start(l.coordinatorProc(), argv); err != nil {
		return err
	}
	return waitFor(ctx, 30*time.Second, "coordinator API", func() error {
		if l.running(l.coordinatorProc()) == 0 {
			return fmt.Errorf("coordinator exited; see %s", l.logFile("coordinator"))
		}
		c, err := apiclient.NewPinned(l.Endpoint(), "", l.CAFile())
		if err != nil {
			return err
		}
		if err := c.Do(ctx, http.MethodGet, "/v1/openapi.json", nil, nil); err != nil {
			return err
		}
		_, err = l.AdminToken()
		return err
	})
}

// StopCoordinator stops the coordinator with sig.
func (l *Lab) StopCoordinator(sig syscall.Signal) error { return l.stop(l.coordinatorProc(), sig) }

// AgentTokenFile holds host i's agent token.
func (l *Lab) AgentTokenFile(i int) string {
	return filepath.Join(l.Dir, l.HostName(i)+".token")
}

// ensureAgentToken gives host i's agent its own token, which speaks for
// that host only.
func (l *Lab) ensureAgentToken(ctx context.Context, i int) error {
	if _, err := os.Stat(l.AgentTokenFile(i)); err == nil {
		return nil
	}
	admin, err := l.AdminToken()
	if err != nil {
		return err
	}
	var nt api.NewToken
	c, err := apiclient.NewPinned(l.Endpoint(), admin, l.CAFile())
	if err != nil {
		return err
	}
	req := api.TokenRequest{Name: "agent-" + l.HostName(i), Role: api.RoleAgent, Host: l.HostName(i)}
	if err := c.Do(ctx, http.MethodPost, "/v1/tokens", req, &nt); err != nil {
		return fmt.Errorf("create agent token of %s: %w", l.HostName(i), err)
	}
	return os.WriteFile(l.AgentTokenFile(i), []byte(nt.Secret+"\n"), 0o600)
}

// AgentArgs is the command line of host i's agent.
func (l *Lab) AgentArgs(i int) []string {
	a := l.HostAddr(i).String()
	// nsenter switches only the network namespace: the agent keeps the
	// machine's mount namespace, so the namespaces it makes (bind mounts
	// under /run/netns) are visible to everyone, as on a real host. "ip netns
	// exec" would give it a private mount namespace.
	args := []string{"nsenter", "--net=/run/netns/" + l.Namespace(i), l.agentBin(i), "--config=",
		"--name", l.HostName(i), "--coordinator", l.Endpoint(), "--coordinator-ca-file", l.CAFile(),
		"--token-file", l.AgentTokenFile(i), "--state-dir", filepath.Join(l.Dir, l.HostName(i)),
		"--zone", "lab", "--vtep", a,
		"--gossip-bind", a + ":7946", "--join", l.BridgeAddr().String() + ":7946",
		"--gossip-profile", "local", "--gossip-key-file", filepath.Join(l.Dir, "gossip.key"),
		"--metrics-addr", a + ":9464", "--poll-wait", "20s", "--log-format", "json",
		"--underlay-dev", "underlay0", "--netns-prefix", l.NetNSPrefix(i), "--physnet", "physnet1=ext0",
		// A short grace keeps the lab's failure tests quick; restarts in
		// the lab take well under it.
		"--dead-host-grace", "3s"}
	if l.L2Driver(i) == DriverOVS {
		args = append(args, l.ovsArgs(i)...)
	}
	return append(args, l.cephArgs()...)
}

// NetNSPrefix starts the names of the namespaces host i's agent makes
// (DHCP, endpoints): namespace names are global on the machine.
func (l *Lab) NetNSPrefix(i int) string { return l.Namespace(i) + "-" }

// EndpointNamespace is where host i's agent plugs an endpoint port.
func (l *Lab) EndpointNamespace(i int, project, port string) string {
	return netspec.EndpointNamespace(l.NetNSPrefix(i), netspec.ResourceID(project, port))
}

// StartAgent starts host i's agent in its namespace.
func (l *Lab) StartAgent(i int) error {
	args := l.AgentArgs(i)
	if l.AgentExtraArgs != nil {
		args = append(args, l.AgentExtraArgs(i)...)
	}
	_, err := l.start(l.agentProc(i), args)
	return err
}

// StopAgent stops host i's agent with sig (SIGKILL to simulate a crash).
func (l *Lab) StopAgent(i int, sig syscall.Signal) error { return l.stop(l.agentProc(i), sig) }

// AgentPID is host i's agent pid, or 0.
func (l *Lab) AgentPID(i int) int { return l.running(l.agentProc(i)) }

// Down stops every process the lab started and removes its network and
// state. It is safe on a lab that is partly or not at all up.
func (l *Lab) Down() error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for i := 1; i <= l.Hosts; i++ {
		keep(l.StopAgent(i, syscall.SIGTERM))
	}
	keep(l.StopCoordinator(syscall.SIGTERM))
	// The agents leave their guests running when they stop, by design
	// (an agent restart is not a guest outage): the guests go here, while
	// Ceph still serves their RBD disks and their libvirtds still run.
	keep(l.StopGuests())
	keep(cephtest.StopDir(l.CephDir()))
	// Likewise the rest of their data plane: dnsmasq processes, the
	// libvirtds (by their pid files) and the namespaces they made go here.
	pidfile.KillAll(l.Dir)
	keep(l.downNetwork())
	if first == nil {
		keep(os.RemoveAll(l.Dir))
	}
	return first
}

// waitFor polls ok until it holds or limit, scaled by
// STRATA_TIMEOUT_FACTOR, has passed.
func waitFor(ctx context.Context, limit time.Duration, what string, ok func() error) error {
	limit = testenv.Scale(limit)
	deadline := time.Now().Add(limit)
	var err error
	for time.Now().Before(deadline) {
		if err = ok(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after %s: %w", what, limit, err)
}
