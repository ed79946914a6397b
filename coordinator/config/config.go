// Package config is strata-coordinator's configuration: defaults, then
// /etc/strata/coordinator.yaml, then flags.
package config

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/strata-infra/strata/coordinator/scheduler"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/config"
	"github.com/strata-infra/strata/pkg/credential"
)

// DefaultPath is where packages install the coordinator's config.
const DefaultPath = "/etc/strata/coordinator.yaml"

// Config is the whole coordinator configuration.
type Config struct {
	Name    string   `json:"name"`
	DataDir string   `json:"data_dir"`
	Listen  []string `json:"listen"`
	// APIURL is the URL agents and stratactl use; published in gossip.
	APIURL string `json:"api_url"`
	// TLSCertFile and TLSKeyFile are the operator's API certificate;
	// empty makes the coordinator issue its own from a CA it keeps in
	// the data dir (ca.crt, which clients pin). TLSCAFile is the CA
	// clients should pin with the operator's certificate (for the log).
	TLSCertFile string   `json:"tls_cert_file"`
	TLSKeyFile  string   `json:"tls_key_file"`
	TLSCAFile   string   `json:"tls_ca_file"`
	TLSNames    []string `json:"tls_names"`
	// InsecureHTTP serves plain HTTP; allowed only when every listen
	// address is loopback.
	InsecureHTTP bool `json:"insecure_http"`
	// MaxConns bounds the API's open connections.
	MaxConns        int      `json:"max_conns"`
	GossipBind      string   `json:"gossip_bind"`
	GossipAdvertise string   `json:"gossip_advertise"`
	Join            []string `json:"join"`
	GossipKeyFile   string   `json:"gossip_key_file"`
	GossipProfile   string   `json:"gossip_profile"`
	RetainDeltas    int      `json:"retain_deltas"`
	// Store is where desired state lives: "bbolt" (a file in the data
	// dir, one coordinator) or "etcd" (any number of coordinators over
	// one etcd cluster).
	Store         string        `json:"store"`
	EtcdEndpoints []string      `json:"etcd_endpoints"`
	EtcdPrefix    string        `json:"etcd_prefix"`
	MaxWait       time.Duration `json:"max_wait"`
	// VNIRange is the VXLAN IDs networks are given, "min-max".
	VNIRange    string `json:"vni_range"`
	UnderlayMTU int    `json:"underlay_mtu"`
	MetricsAddr string `json:"metrics_addr"`
	// RecoveryGrace is how long a host stays dead in gossip before the
	// recovery controller fences it and moves what it ran; 0 turns
	// recovery off. FenceExpiry is the fence's blocklist expiry;
	// FenceRetention how long a released fence is kept as history.
	RecoveryGrace  time.Duration `json:"recovery_grace"`
	FenceExpiry    time.Duration `json:"fence_expiry"`
	FenceRetention time.Duration `json:"fence_retention"`
	LogFormat      string        `json:"log_format"`
	LogLevel       string        `json:"log_level"`
	// Scheduler tunes placement.
	Scheduler Scheduler `json:"scheduler"`
}

// Scheduler is the placement section: nova's allocation ratios (how far
// a host's vCPUs, RAM and disk may be overcommitted) and whether free RAM
// and vCPUs spread instances out or pack them.
type Scheduler struct {
	CPUAllocationRatio  float64 `json:"cpu_allocation_ratio"`
	RAMAllocationRatio  float64 `json:"ram_allocation_ratio"`
	DiskAllocationRatio float64 `json:"disk_allocation_ratio"`
	// Placement is "spread" (the default) or "pack".
	Placement string `json:"placement"`
}

// SchedulerConfig is the scheduler's configuration from c.
func (c *Config) SchedulerConfig() scheduler.Config {
	sc := scheduler.DefaultConfig()
	sc.Ratios = scheduler.Ratios{VCPU: c.Scheduler.CPUAllocationRatio, RAM: c.Scheduler.RAMAllocationRatio, Disk: c.Scheduler.DiskAllocationRatio}
	sc.Spread = c.Scheduler.Placement != "pack"
	return sc
}

// SetDefaults fills c with the built-in defaults.
func (c *Config) SetDefaults() {
	host, _ := os.Hostname()
	*c = Config{
		Name:           host + "-coordinator",
		DataDir:        "/var/lib/strata/coordinator",
		Listen:         []string{"127.0.0.1:7070"},
		GossipBind:     "0.0.0.0:7946",
		GossipProfile:  "lan",
		GossipKeyFile:  "/etc/strata/gossip.key",
		RetainDeltas:   10000,
		Store:          "bbolt",
		EtcdPrefix:     "/strata/",
		MaxWait:        60 * time.Second,
		VNIRange:       "1000-99999",
		UnderlayMTU:    1500,
		MetricsAddr:    "127.0.0.1:9465",
		RecoveryGrace:  30 * time.Second,
		FenceExpiry:    24 * time.Hour,
		FenceRetention: 7 * 24 * time.Hour,
		MaxConns:       4096,
		LogFormat:      "text",
		LogLevel:       "info",
		Scheduler: Scheduler{CPUAllocationRatio: scheduler.DefaultRatios().VCPU, RAMAllocationRatio: scheduler.DefaultRatios().RAM,
			DiskAllocationRatio: scheduler.DefaultRatios().Disk, Placement: "spread"},
	}
}

// BindFlags binds command-line flags to c's fields.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	c.SetDefaults()
	fs.StringVar(&c.Name, "name", c.Name, "member name in the gossip pool")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the store and the admin token")
	fs.StringSliceVar(&c.Listen, "listen", c.Listen, "API listen address ip:port (repeatable)")
	fs.StringVar(&c.APIURL, "api-url", c.APIURL, "API URL published to agents (default: https:// + first listen address)")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", c.TLSCertFile, "API certificate (PEM; empty: issue one from the coordinator's own CA in the data dir)")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", c.TLSKeyFile, "key of --tls-cert-file (PEM)")
	fs.StringVar(&c.TLSCAFile, "tls-ca-file", c.TLSCAFile, "CA clients pin with the operator's certificate (its fingerprint is logged)")
	fs.StringSliceVar(&c.TLSNames, "tls-name", c.TLSNames, "extra DNS name or IP in the issued API certificate (repeatable)")
	fs.BoolVar(&c.InsecureHTTP, "insecure-http", c.InsecureHTTP, "serve plain HTTP (only when every listen address is loopback)")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "most open API connections")
	fs.StringVar(&c.GossipBind, "gossip-bind", c.GossipBind, "gossip listen address ip:port")
	fs.StringVar(&c.GossipAdvertise, "gossip-advertise", c.GossipAdvertise, "gossip address peers use, ip:port")
	fs.StringSliceVar(&c.Join, "join", c.Join, "gossip peer to join, ip:port (repeatable)")
	fs.StringVar(&c.GossipKeyFile, "gossip-key-file", c.GossipKeyFile, "file with the base64 gossip encryption key")
	fs.StringVar(&c.GossipProfile, "gossip-profile", c.GossipProfile, "gossip timing profile: lan or local")
	fs.IntVar(&c.RetainDeltas, "retain-deltas", c.RetainDeltas, "deltas kept for agents to catch up by")
	fs.StringVar(&c.Store, "store", c.Store, "desired-state store: bbolt (one coordinator) or etcd (many)")
	fs.StringSliceVar(&c.EtcdEndpoints, "etcd-endpoints", c.EtcdEndpoints, "etcd client URL, with --store etcd (repeatable)")
	fs.StringVar(&c.EtcdPrefix, "etcd-prefix", c.EtcdPrefix, "key prefix of this cluster's state in etcd")
	fs.DurationVar(&c.MaxWait, "max-wait", c.MaxWait, "longest plan long-poll")
	fs.StringVar(&c.VNIRange, "vni-range", c.VNIRange, "VXLAN IDs given to networks, min-max")
	fs.IntVar(&c.UnderlayMTU, "underlay-mtu", c.UnderlayMTU, "hosts' underlay MTU; tenant networks get 50 less")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "Prometheus metrics listen address (empty: off)")
	fs.DurationVar(&c.RecoveryGrace, "recovery-grace", c.RecoveryGrace, "how long a dead host waits before it is fenced and its instances, routers and DHCP move (0: off)")
	fs.DurationVar(&c.FenceExpiry, "fence-expiry", c.FenceExpiry, "expiry of a fence's Ceph blocklist entries (renewed while the fence holds)")
	fs.DurationVar(&c.FenceRetention, "fence-retention", c.FenceRetention, "how long a released fence is kept as the record of what was fenced when")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.Float64Var(&c.Scheduler.CPUAllocationRatio, "cpu-allocation-ratio", c.Scheduler.CPUAllocationRatio, "vCPUs placed per host CPU")
	fs.Float64Var(&c.Scheduler.RAMAllocationRatio, "ram-allocation-ratio", c.Scheduler.RAMAllocationRatio, "RAM placed per host RAM (1: no overcommit)")
	fs.Float64Var(&c.Scheduler.DiskAllocationRatio, "disk-allocation-ratio", c.Scheduler.DiskAllocationRatio, "disk placed per host disk")
	fs.StringVar(&c.Scheduler.Placement, "placement", c.Scheduler.Placement, "spread instances over hosts, or pack them: spread or pack")
}

// Load merges defaults, the file at path and the flags the user set.
func (c *Config) Load(path string, required bool, fs *pflag.FlagSet) error {
	if err := config.Load(path, required, c, c.SetDefaults, fs); err != nil {
		return err
	}
	// Under systemd the secrets come as credentials (LoadCredential=).
	c.GossipKeyFile = credential.Path("gossip.key", c.GossipKeyFile)
	if c.TLSKeyFile != "" {
		c.TLSKeyFile = credential.Path("api.key", c.TLSKeyFile)
	}
	if c.APIURL == "" && len(c.Listen) > 0 {
		c.APIURL = "https://" + c.Listen[0]
		if c.InsecureHTTP {
			c.APIURL = "http://" + c.Listen[0]
		}
	}
	return c.Validate()
}

// Validate checks the merged configuration; errors name the key.
func (c *Config) Validate() error {
	if fe := api.ValidateName("name", c.Name); fe != nil {
		return fe
	}
	if c.DataDir == "" {
		return api.Fieldf("data_dir", "must be set")
	}
	if len(c.Listen) == 0 {
		return api.Fieldf("listen", "needs at least one ip:port")
	}
	for key, r := range map[string]float64{"scheduler.cpu_allocation_ratio": c.Scheduler.CPUAllocationRatio,
		"scheduler.ram_allocation_ratio": c.Scheduler.RAMAllocationRatio, "scheduler.disk_allocation_ratio": c.Scheduler.DiskAllocationRatio} {
		if !(r > 0) || r > 1000 {
			return api.Fieldf(key, "%v is not in (0, 1000]", r)
		}
	}
	if c.FenceRetention < time.Minute {
		return api.Fieldf("fence_retention", "%s is too short to keep a released fence as history (at least 1m)", c.FenceRetention)
	}
	if p := c.Scheduler.Placement; p != "spread" && p != "pack" {
		return api.Fieldf("scheduler.placement", "%q is neither spread nor pack", p)
	}
	for _, l := range c.Listen {
		if _, err := netip.ParseAddrPort(l); err != nil {
			return api.Fieldf("listen", "%q is not ip:port", l)
		}
	}
	if _, err := netip.ParseAddrPort(c.GossipBind); err != nil {
		return api.Fieldf("gossip_bind", "%q is not ip:port", c.GossipBind)
	}
	if c.InsecureHTTP {
		for _, l := range c.Listen {
			if ap, _ := netip.ParseAddrPort(l); !ap.Addr().IsLoopback() {
				return api.Fieldf("insecure_http", "plain HTTP only on loopback; listen address %s is not (tokens and plans would cross the network in clear)", l)
			}
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return api.Fieldf("tls_cert_file", "tls_cert_file and tls_key_file go together")
	}
	if c.MaxConns < 16 {
		return api.Fieldf("max_conns", "%d is below 16", c.MaxConns)
	}
	if c.GossipKeyFile == "" {
		return api.Fieldf("gossip_key_file", "must be set: the gossip pool admits only members holding the cluster key (base64 of 32 random bytes, mode 0600)")
	}
	if c.GossipProfile != "lan" && c.GossipProfile != "local" {
		return api.Fieldf("gossip_profile", "%q is not lan or local", c.GossipProfile)
	}
	if _, _, err := c.VNIs(); err != nil {
		return err
	}
	if c.UnderlayMTU < 1280 || c.UnderlayMTU > 65535 {
		return api.Fieldf("underlay_mtu", "%d is outside 1280..65535", c.UnderlayMTU)
	}
	if c.RetainDeltas < 1 {
		return api.Fieldf("retain_deltas", "must be at least 1")
	}
	switch c.Store {
	case "bbolt":
	case "etcd":
		if len(c.EtcdEndpoints) == 0 {
			return api.Fieldf("etcd_endpoints", "needs at least one etcd client URL with store: etcd")
		}
		if c.EtcdPrefix == "" || c.EtcdPrefix[0] != '/' {
			return api.Fieldf("etcd_prefix", "%q must start with /", c.EtcdPrefix)
		}
	default:
		return api.Fieldf("store", "%q is not bbolt or etcd", c.Store)
	}
	return nil
}

// VNIs parses VNIRange.
func (c *Config) VNIs() (uint32, uint32, error) {
	var lo, hi uint32
	if n, err := fmt.Sscanf(c.VNIRange, "%d-%d", &lo, &hi); err != nil || n != 2 || lo < 1 || hi < lo || hi > 1<<24-1 {
		return 0, 0, api.Fieldf("vni_range", "%q is not min-max within 1..16777215", c.VNIRange)
	}
	return lo, hi, nil
}
