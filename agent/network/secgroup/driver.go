// Package secgroup enforces security groups on the ports of this host:
// stateful per-port allow rules, remote groups as nft sets of member
// addresses updated in place, one nft table applied as one batch per Set.
package secgroup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/router/nftsync"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
)

// Config configures a Driver.
type Config struct {
	NetNS  string // the host's namespace; "" is the agent's own
	Table  string // DefaultTable when ""
	Logger *slog.Logger
}

// Driver keeps the security group table of one host.
type Driver struct {
	mu     sync.Mutex
	cfg    Config
	log    *slog.Logger
	last   nftsync.Stats
	closed bool
}

var _ network.Driver = (*Driver)(nil)

// New makes a driver; it touches nothing and starts no goroutine.
func New(cfg Config) (*Driver, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{cfg: cfg, log: log.With("subsystem", "secgroup")}, nil
}

// LastSync returns what the last Set changed.
func (d *Driver) LastSync() nftsync.Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// Close ends the driver; the table stays in force.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return nil
}

// Set converges the table to st's ports and groups in one batch.
func (d *Driver) Set(ctx context.Context, st network.HostState) error {
	if err := netspec.ValidateSecurityGroups(st.SecurityGroups); err != nil {
		return fmt.Errorf("secgroup: %w", err)
	}
	known := map[string]bool{}
	for _, g := range st.SecurityGroups {
		known[g.ID] = true
	}
	for _, p := range st.Ports {
		for _, g := range p.SecurityGroups {
			if !known[g] {
				return fmt.Errorf("secgroup: port %q: unknown security group %q", p.ID, g)
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("secgroup: driver closed")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := netnsutil.Do(d.cfg.NetNS, bridgeNetfilterOn); err != nil {
		return fmt.Errorf("secgroup: %w", err)
	}
	c, done, err := d.conn()
	if err != nil {
		return err
	}
	defer done()
	stats, err := nftsync.Sync(c, Ruleset(d.cfg.Table, st))
	d.last = stats
	if err != nil {
		return fmt.Errorf("secgroup: %w", err)
	}
	if stats.Ops() > 0 {
		d.log.Info("applied security groups", "rules_added", stats.RulesAdded, "rules_deleted", stats.RulesDeleted,
			"elements_added", stats.ElemsAdded, "elements_deleted", stats.ElemsDeleted)
	}
	return nil
}

func (d *Driver) conn() (*nftables.Conn, func(), error) {
	if d.cfg.NetNS == "" {
		c, err := nftsync.Open(-1)
		return c, func() {}, err
	}
	f, err := os.Open(netnsutil.Path(d.cfg.NetNS))
	if err != nil {
		return nil, nil, fmt.Errorf("secgroup: open netns %q: %w", d.cfg.NetNS, err)
	}
	c, err := nftsync.Open(int(f.Fd()))
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("secgroup: nftables: %w", err)
	}
	return c, func() { f.Close() }, nil
}

// bridgeNetfilterOn makes bridged IPv4 traverse the inet hooks in the
// current namespace (br_netfilter), which stateful filtering needs.
func bridgeNetfilterOn() error {
	const p = "/proc/sys/net/bridge/bridge-nf-call-iptables"
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("read %s (br_netfilter needed): %w", p, err)
	}
	if strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	return os.WriteFile(p, []byte("1"), 0o644)
}
