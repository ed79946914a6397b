// Package config is strata-agent's configuration: defaults, then
// /etc/strata/agent.yaml, then flags.
package config

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/config"
	"github.com/strata-infra/strata/pkg/credential"
	"github.com/strata-infra/strata/pkg/netspec"
)

// DefaultPath is where packages install the agent's config.
const DefaultPath = "/etc/strata/agent.yaml"

// Gossip configures the agent's memberlist member.
type Gossip struct {
	Bind      string   `json:"bind"`      // ip:port to listen on
	Advertise string   `json:"advertise"` // ip:port peers reach us at; empty = bind
	Join      []string `json:"join"`
	KeyFile   string   `json:"key_file"`
	// Profile is "lan" for production or "local" for fast failure
	// detection in labs and tests.
	Profile string `json:"profile"`
}

// Reserved is capacity kept back for the host itself.
type Reserved = api.Capacity

// Network configures the tenant network subsystem.
type Network struct {
	// Driver is "linuxbridge" (VXLAN on Linux bridges), "ovs" (Open
	// vSwitch with VXLAN and GRE tunnel ports) or "none".
	Driver string `json:"driver"`
	// OVS configures the ovs driver.
	OVS OVS `json:"ovs"`
	// UnderlayDev carries the tunnels; empty lets routing decide.
	UnderlayDev string `json:"underlay_dev"`
	// NetNSPrefix starts every namespace the agent makes (DHCP, test
	// endpoints). Namespace names are global on a machine, so agents
	// sharing one (the lab) need distinct prefixes.
	NetNSPrefix string `json:"netns_prefix"`
	DHCPDomain  string `json:"dhcp_domain"`
	// DHCPUser is the unprivileged user each dnsmasq drops to (the
	// packages make strata-dnsmasq); missing, Debian's dnsmasq, then
	// nobody. Never root.
	DHCPUser string `json:"dhcp_user"`
	// PhysicalNetworks maps the physical networks external networks name
	// to host interfaces, each bridged by the agent (sbe-<physnet>).
	PhysicalNetworks map[string]string `json:"physical_networks"`
	// DeadHostGrace keeps a dead host's tunnel entries this long, so an
	// agent restart slower than failure detection cuts no traffic.
	DeadHostGrace time.Duration `json:"dead_host_grace"`
}

// OVS configures the Open vSwitch L2 driver.
type OVS struct {
	// DB is the OVSDB endpoint; default unix:/run/openvswitch/db.sock.
	DB string `json:"db"`
	// RunDir holds the bridges' OpenFlow sockets; default /run/openvswitch.
	RunDir string `json:"run_dir"`
	// Bridge is the integration bridge; default strata-int.
	Bridge string `json:"bridge"`
	// Datapath is "system" (kernel), "netdev" (userspace) or "" to detect.
	Datapath string `json:"datapath"`
}

// Config is the whole agent configuration.
type Config struct {
	Name string `json:"name"`
	// Coordinator is the coordinators' API URLs: one, or a list (HA
	// coordinators over one etcd). The agent long-polls one and moves to
	// the next when it cannot be reached.
	Coordinator URLs `json:"coordinator"`
	// CoordinatorCAFile is the coordinator's CA (its data dir's ca.crt),
	// the only one the agent trusts; empty trusts the system's roots.
	CoordinatorCAFile string   `json:"coordinator_ca_file"`
	TokenFile         string   `json:"token_file"`
	StateDir          string   `json:"state_dir"`
	Zone              string   `json:"zone"`
	Aggregates        []string `json:"aggregates"`
	VTEP              string   `json:"vtep"`
	Gossip            Gossip   `json:"gossip"`
	Reserved          Reserved `json:"reserved"`
	Network           Network  `json:"network"`
	Compute           Compute  `json:"compute"`
	Storage           Storage  `json:"storage"`
	MetricsAddr       string   `json:"metrics_addr"`
	LogFormat         string   `json:"log_format"`
	LogLevel          string   `json:"log_level"`
	// Resync is the period of the level-triggered full reconcile.
	Resync   time.Duration `json:"resync"`
	PollWait time.Duration `json:"poll_wait"`
}

// SetDefaults fills c with the built-in defaults.
func (c *Config) SetDefaults() {
	host, _ := os.Hostname()
	*c = Config{
		Name:              host,
		Coordinator:       URLs{"https://127.0.0.1:7070"},
		CoordinatorCAFile: "/etc/strata/ca.crt",
		TokenFile:         "/etc/strata/agent.token",
		StateDir:          "/var/lib/strata/agent",
		Zone:              "default",
		Gossip:            Gossip{Bind: "0.0.0.0:7946", Profile: "lan", KeyFile: "/etc/strata/gossip.key"},
		Reserved:          Reserved{VCPUs: 1, RAMMiB: 1024, DiskGiB: 10},
		Network:           Network{Driver: "linuxbridge", NetNSPrefix: "strata-", DHCPDomain: "strata.internal", DHCPUser: "strata-dnsmasq", PhysicalNetworks: map[string]string{}, DeadHostGrace: 30 * time.Second},
		Compute:           DefaultCompute(),
		Storage:           DefaultStorage(),
		MetricsAddr:       "127.0.0.1:9464",
		LogFormat:         "text",
		LogLevel:          "info",
		Resync:            time.Minute,
		PollWait:          30 * time.Second,
	}
}

// BindFlags binds command-line flags to c's fields.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	c.SetDefaults()
	fs.StringVar(&c.Name, "name", c.Name, "host name in the cluster")
	fs.Var(&c.Coordinator, "coordinator", "coordinator API URLs, comma-separated (https; http only to a loopback address)")
	fs.StringVar(&c.CoordinatorCAFile, "coordinator-ca-file", c.CoordinatorCAFile, "the coordinator's CA certificate, pinned (empty: the system's roots)")
	fs.StringVar(&c.TokenFile, "token-file", c.TokenFile, "file holding the agent's API token")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "directory for the agent's state")
	fs.StringVar(&c.Zone, "zone", c.Zone, "availability zone")
	fs.StringSliceVar(&c.Aggregates, "aggregate", c.Aggregates, "host aggregate (repeatable)")
	fs.StringVar(&c.VTEP, "vtep", c.VTEP, "local VTEP (tunnel endpoint) address")
	fs.StringVar(&c.Gossip.Bind, "gossip-bind", c.Gossip.Bind, "gossip listen address ip:port")
	fs.StringVar(&c.Gossip.Advertise, "gossip-advertise", c.Gossip.Advertise, "gossip address peers use, ip:port")
	fs.StringSliceVar(&c.Gossip.Join, "join", c.Gossip.Join, "gossip peer to join, ip:port (repeatable)")
	fs.StringVar(&c.Gossip.KeyFile, "gossip-key-file", c.Gossip.KeyFile, "file with the base64 gossip encryption key")
	fs.StringVar(&c.Gossip.Profile, "gossip-profile", c.Gossip.Profile, "gossip timing profile: lan or local")
	fs.StringVar(&c.Network.Driver, "network-driver", c.Network.Driver, "tenant network driver: linuxbridge, ovs or none")
	fs.StringVar(&c.Network.OVS.DB, "ovs-db", c.Network.OVS.DB, "OVSDB endpoint of the ovs driver (default unix:/run/openvswitch/db.sock)")
	fs.StringVar(&c.Network.OVS.RunDir, "ovs-run-dir", c.Network.OVS.RunDir, "directory of the bridges' OpenFlow sockets (default /run/openvswitch)")
	fs.StringVar(&c.Network.OVS.Datapath, "ovs-datapath", c.Network.OVS.Datapath, "OVS datapath: system, netdev or empty to detect")
	fs.StringVar(&c.Network.UnderlayDev, "underlay-dev", c.Network.UnderlayDev, "device carrying the tunnels (empty: routing decides)")
	fs.StringVar(&c.Network.NetNSPrefix, "netns-prefix", c.Network.NetNSPrefix, "prefix of every network namespace the agent makes")
	fs.DurationVar(&c.Network.DeadHostGrace, "dead-host-grace", c.Network.DeadHostGrace, "how long a dead host keeps its tunnel entries")
	fs.StringToStringVar(&c.Network.PhysicalNetworks, "physnet", c.Network.PhysicalNetworks, "physical network to host interface, physnet=dev (repeatable)")
	c.Compute.bindFlags(fs)
	c.Storage.bindFlags(fs)
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "Prometheus metrics listen address (empty: off)")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.DurationVar(&c.Resync, "resync", c.Resync, "period of the full level-triggered reconcile")
	fs.DurationVar(&c.PollWait, "poll-wait", c.PollWait, "how long one plan long-poll waits")
}

// Load merges defaults, the file at path and the flags the user set.
func (c *Config) Load(path string, required bool, fs *pflag.FlagSet) error {
	if err := config.Load(path, required, c, c.SetDefaults, fs); err != nil {
		return err
	}
	// Under systemd the secrets come as credentials (LoadCredential=).
	c.TokenFile = credential.Path("agent.token", c.TokenFile)
	c.Gossip.KeyFile = credential.Path("gossip.key", c.Gossip.KeyFile)
	return c.Validate()
}

// Validate checks the merged configuration; errors name the key.
func (c *Config) Validate() error {
	if fe := api.ValidateName("name", c.Name); fe != nil {
		return fe
	}
	if len(c.Coordinator) == 0 {
		return api.Fieldf("coordinator", "must be set")
	}
	for i, u := range c.Coordinator {
		if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			return api.Fieldf(fmt.Sprintf("coordinator[%d]", i), "%q: want https://host:port", u)
		}
	}
	if c.StateDir == "" {
		return api.Fieldf("state_dir", "must be set")
	}
	if c.VTEP != "" {
		if _, err := netip.ParseAddr(c.VTEP); err != nil {
			return api.Fieldf("vtep", "%q is not an IP address", c.VTEP)
		}
	}
	if _, err := netip.ParseAddrPort(c.Gossip.Bind); err != nil {
		return api.Fieldf("gossip.bind", "%q is not ip:port", c.Gossip.Bind)
	}
	if c.Gossip.Advertise != "" {
		if _, err := netip.ParseAddrPort(c.Gossip.Advertise); err != nil {
			return api.Fieldf("gossip.advertise", "%q is not ip:port", c.Gossip.Advertise)
		}
	}
	if c.Gossip.KeyFile == "" {
		return api.Fieldf("gossip.key_file", "must be set: the gossip pool admits only members holding the cluster key")
	}
	if c.Gossip.Profile != "lan" && c.Gossip.Profile != "local" {
		return api.Fieldf("gossip.profile", "%q is not lan or local", c.Gossip.Profile)
	}
	switch c.Network.Driver {
	case "linuxbridge", "ovs":
		if c.VTEP == "" {
			return api.Fieldf("vtep", "must be set for the %s network driver (or set network.driver: none)", c.Network.Driver)
		}
	case "none":
	default:
		return api.Fieldf("network.driver", "%q is not linuxbridge, ovs or none", c.Network.Driver)
	}
	if d := c.Network.OVS.Datapath; d != "" && d != "system" && d != "netdev" {
		return api.Fieldf("network.ovs.datapath", "%q is not system, netdev or empty (detect)", d)
	}
	if b := c.Network.OVS.Bridge; len(b) > 15 {
		return api.Fieldf("network.ovs.bridge", "%q is longer than 15 characters", b)
	}
	for physnet, dev := range c.Network.PhysicalNetworks {
		if physnet == "" || len(physnet) > 11 || dev == "" {
			return api.Fieldf("network.physical_networks", "%q=%q: the name must be 1..11 characters and the device set", physnet, dev)
		}
	}
	if c.Network.DeadHostGrace < 0 {
		return api.Fieldf("network.dead_host_grace", "%s is negative", c.Network.DeadHostGrace)
	}
	if c.Network.NetNSPrefix == "" || len(c.Network.NetNSPrefix) > netspec.MaxNetNSPrefix {
		return api.Fieldf("network.netns_prefix", "must be 1..32 characters")
	}
	if err := c.Compute.validate(); err != nil {
		return err
	}
	if err := c.Storage.validate(); err != nil {
		return err
	}
	if c.Resync < time.Second {
		return api.Fieldf("resync", "%s is below 1s", c.Resync)
	}
	if c.PollWait < time.Second || c.PollWait > 5*time.Minute {
		return api.Fieldf("poll_wait", "%s is outside 1s..5m", c.PollWait)
	}
	return nil
}

// Token reads the agent's API token.
func (c *Config) Token() (string, error) {
	b, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	return string(trimSpace(b)), nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
