// Package lab runs an all-in-one Strata cluster on one machine: a
// coordinator and N agents, each agent in its own network namespace joined
// by a veth underlay on a lab bridge, gossiping over those addresses. The
// lab (make lab) and the integration tests share this code.
package lab

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// Config describes one lab.
type Config struct {
	// Prefix names everything the lab makes: namespaces <Prefix>-h1..hN,
	// the bridge <Bridge>, veths <Short>h1... Tests use a unique prefix.
	Prefix string
	// Short is a <=8 character tag for link names (IFNAMSIZ is 15).
	Short  string
	Bridge string
	Hosts  int
	// Subnet is the underlay: .1 is the bridge (and the coordinator's
	// gossip and API address), .11 onwards the hosts.
	Subnet netip.Prefix
	// Dir holds the lab's state: pid files, logs, data dirs, tokens.
	Dir string
	// BinDir holds strata-coordinator, strata-agent and stratactl.
	BinDir string
	// LoopbackAPI also serves the API on 127.0.0.1:7070 for the operator.
	LoopbackAPI  bool
	RetainDeltas int
	// AgentExtraArgs, when set, adds flags to host i's agent (a test
	// turning compute on for one host, say).
	AgentExtraArgs func(i int) []string
	// CoordinatorExtraArgs adds flags to the coordinator (a short
	// recovery grace, say).
	CoordinatorExtraArgs []string
	// AgentBins, when set, holds host i's strata-agent at index i-1
	// instead of BinDir's: a binary a package manager installed in a
	// root of that host's own (the rolling-upgrade test).
	AgentBins []string
	// Env, when set, adds environment variables to a process the lab
	// starts, by its name: "coordinator", "h1"... (a test standing in
	// for systemd's NOTIFY_SOCKET, say).
	Env func(name string) []string
	// L2Drivers is host i's L2 driver at index i-1: "linuxbridge" (also
	// when missing or empty) or "ovs" (the lab runs Open vSwitch in that
	// host's namespace; see ovs.go).
	L2Drivers []string
	// Ceph, when set, is the cluster every host's agent is configured
	// for (client config, storage controller). RunCeph makes Up start
	// the lab's own cluster on the lab bridge and set Ceph (make lab).
	Ceph    *Ceph
	RunCeph bool
}

// Default is the lab of the README: make lab.
func Default(repo string) Config {
	return Config{
		Prefix: "strata-lab", Short: "stlab", Bridge: "strata-lab0", Hosts: 3,
		Subnet: netip.MustParsePrefix("172.31.250.0/24"),
		Dir:    filepath.Join(repo, ".lab"), BinDir: filepath.Join(repo, "bin"),
		LoopbackAPI: true, RetainDeltas: 10000, L2Drivers: DemoL2Drivers, RunCeph: true,
	}
}

// Lab is a configured lab; its methods are idempotent.
type Lab struct {
	Config
}

// New checks cfg and returns the lab.
func New(cfg Config) (*Lab, error) {
	switch {
	case cfg.Hosts < 1 || cfg.Hosts > 200:
		return nil, fmt.Errorf("lab hosts: %d is outside 1..200", cfg.Hosts)
	case len(cfg.Short) == 0 || len(cfg.Short) > 8:
		return nil, fmt.Errorf("lab short tag %q: want 1..8 characters", cfg.Short)
	case len(cfg.Bridge) == 0 || len(cfg.Bridge) > 15:
		return nil, fmt.Errorf("lab bridge %q: want 1..15 characters", cfg.Bridge)
	case !cfg.Subnet.Addr().Is4() || cfg.Subnet.Bits() > 24:
		return nil, fmt.Errorf("lab subnet %s: want an IPv4 /24 or larger", cfg.Subnet)
	case cfg.Dir == "" || cfg.BinDir == "":
		return nil, fmt.Errorf("lab dir and bin dir must be set")
	case len(cfg.AgentBins) != 0 && len(cfg.AgentBins) != cfg.Hosts:
		return nil, fmt.Errorf("lab agent binaries: %d for %d hosts", len(cfg.AgentBins), cfg.Hosts)
	}
	for i, d := range cfg.L2Drivers {
		if d != "" && d != DriverLinuxBridge && d != DriverOVS {
			return nil, fmt.Errorf("lab host h%d L2 driver %q: want %s or %s", i+1, d, DriverLinuxBridge, DriverOVS)
		}
	}
	return &Lab{Config: cfg}, nil
}

// HostName is the name of host i (1-based): h1, h2...
func (l *Lab) HostName(i int) string { return fmt.Sprintf("h%d", i) }

// Namespace is host i's network namespace.
func (l *Lab) Namespace(i int) string { return fmt.Sprintf("%s-h%d", l.Prefix, i) }

func (l *Lab) nth(n int) netip.Addr {
	a := l.Subnet.Masked().Addr().As4()
	a[3] += byte(n)
	return netip.AddrFrom4(a)
}

// BridgeAddr is the coordinator's underlay address.
func (l *Lab) BridgeAddr() netip.Addr { return l.nth(1) }

// HostAddr is host i's underlay address (and VTEP).
func (l *Lab) HostAddr(i int) netip.Addr { return l.nth(10 + i) }

// Endpoint is the coordinator API URL on the underlay.
func (l *Lab) Endpoint() string { return fmt.Sprintf("https://%s:7070", l.BridgeAddr()) }

// CAFile is the coordinator's CA (made at its first start), which the
// agents, stratactl and the lab's own client pin.
func (l *Lab) CAFile() string { return filepath.Join(l.Dir, "coordinator", "ca.crt") }

// OperatorEndpoint is the URL printed for the operator.
func (l *Lab) OperatorEndpoint() string {
	if l.LoopbackAPI {
		return "https://127.0.0.1:7070"
	}
	return l.Endpoint()
}

// AdminToken reads the coordinator's first admin token.
func (l *Lab) AdminToken() (string, error) {
	b, err := os.ReadFile(filepath.Join(l.Dir, "coordinator", "admin.token"))
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (l *Lab) bin(name string) string { return filepath.Join(l.BinDir, name) }

// agentBin is host i's strata-agent.
func (l *Lab) agentBin(i int) string {
	if len(l.AgentBins) > 0 {
		return l.AgentBins[i-1]
	}
	return l.bin("strata-agent")
}
