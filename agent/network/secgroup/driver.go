// Package secgroup enforces security groups on the ports of this host:
// stateful per-port allow rules, remote groups as nft sets of member
// addresses updated in place, one nft table applied as one batch per Set.
package secgroup

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/nftsync"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
)

// Config configures a Driver.
type Config struct {
	NetNS string // the host's namespace; "" is the agent's own
	Table string // DefaultTable when ""
	// L2Table is the bridge-family anti-spoofing table; DefaultL2Table
	// when "".
	L2Table string
	Logger  *slog.Logger
}

// Driver keeps the security group table of one host.
type Driver struct {
	mu     sync.Mutex
	cfg    Config
	log    *slog.Logger
	last   nftsync.Stats
	nft    *nftsync.Engine // what this driver last applied to the table
	fw     *compilers      // what it compiled last for each shared chain
	builds int             // tables compiled, for tests
	closed bool
	// beforeSync, when set (tests only), sees each batch's desired table
	// and may queue an operation that makes the kernel refuse it.
	beforeSync func(c *nftables.Conn, want nftsync.Table)
}

var _ network.Driver = (*Driver)(nil)

// New makes a driver; it touches nothing and starts no goroutine.
func New(cfg Config) (*Driver, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.L2Table == "" {
		cfg.L2Table = DefaultL2Table
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{cfg: cfg, log: log.With("subsystem", "secgroup"), nft: nftsync.NewEngine(), fw: newCompilers()}, nil
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

// Set converges both tables (anti-spoofing and groups) to st's ports and
// groups in one batch. One bad group or port never holds back the rest,
// and never leaves a port open:
//   - a group that does not validate is applied with no rules, so its
//     ports receive and send nothing (a port naming an unknown group
//     likewise), and reported as a network.ResourceError;
//   - a batch the kernel refuses is split: every local port is first
//     applied closed (nothing in or out), then ports are opened to their
//     groups' rules by halves, until only the ones the kernel refuses
//     stay closed, each reported.
func (d *Driver) Set(ctx context.Context, st network.HostState) error {
	st, errs := usable(st)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("secgroup: driver closed")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Only Linux bridges need br_netfilter: an Open vSwitch host's
	// ports are filtered by its L2 driver's flows.
	if bridged(st) {
		if err := netnsutil.Do(d.cfg.NetNS, bridgeNetfilterOn); err != nil {
			return fmt.Errorf("secgroup: %w", err)
		}
	}
	stats, skipped, err := d.sync(st, nil)
	if err != nil {
		d.log.Warn("security group batch refused; splitting it", "err", err)
		stats, err = d.split(st)
	}
	d.last = stats
	if !skipped {
		d.fw.prune()
	}
	if stats.Ops() > 0 {
		d.log.Info("applied security groups", "rules_added", stats.RulesAdded, "rules_deleted", stats.RulesDeleted,
			"elements_added", stats.ElemsAdded, "elements_deleted", stats.ElemsDeleted)
	}
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("secgroup: %w", errors.Join(errs...))
	}
	return nil
}

// sync applies the anti-spoofing table (bridge family) and the group
// table (inet) with the ports in closed shut, in one batch: the kernel
// takes both or neither, so no packet ever meets one table changed and
// the other not (a port's IPv6 admitted by MAC in inet before its
// sources are checked on its link, or the reverse).
//
// A pass over the same state as the last one that applied, with nothing
// committed to the namespace's ruleset since, neither compiles the tables
// nor reads them back (skipped): nftsync.Engine.SyncTablesFrom. Compiling
// 2,000 ports' tables and diffing them was over half of what an agent's
// resync pass allocated.
func (d *Driver) sync(st network.HostState, closed map[string]bool) (_ nftsync.Stats, skipped bool, _ error) {
	c, done, err := d.conn()
	if err != nil {
		return nftsync.Stats{}, false, err
	}
	defer done()
	build := func() []nftsync.Table {
		d.builds++
		want := ruleset(d.cfg.Table, st, closed, d.fw)
		if d.beforeSync != nil {
			d.beforeSync(c, want)
		}
		return []nftsync.Table{l2Ruleset(d.cfg.L2Table, st), want}
	}
	sum, err := d.inputs(st, closed)
	if err != nil {
		st, err := d.nft.SyncTables(c, build()...)
		return st, false, err
	}
	return d.nft.SyncTablesFrom(c, sum, build)
}

// inputs names everything the tables are built from: the table names,
// the state and the ports kept closed.
func (d *Driver) inputs(st network.HostState, closed map[string]bool) (nftsync.Sum, error) {
	h := sha256.New()
	err := json.NewEncoder(h).Encode(struct {
		Table, L2Table string
		State          network.HostState
		Closed         map[string]bool
	}{d.cfg.Table, d.cfg.L2Table, st, closed})
	var sum nftsync.Sum
	h.Sum(sum[:0])
	return sum, err
}

// split applies st with every local filtered port closed, then opens the
// ports by halves; it returns the stats of the last batch that applied and
// an error for each port the kernel refused.
func (d *Driver) split(st network.HostState) (nftsync.Stats, error) {
	var ports []string
	closed := map[string]bool{}
	for _, p := range st.Ports {
		if filtered(st, p) {
			ports = append(ports, p.ID)
			closed[p.ID] = true
		}
	}
	stats, _, err := d.sync(st, closed)
	if err != nil {
		return stats, fmt.Errorf("with every port closed: %w", err)
	}
	var errs []error
	var open func(ids []string)
	open = func(ids []string) {
		for _, id := range ids {
			delete(closed, id)
		}
		s, _, err := d.sync(st, closed)
		if err == nil {
			stats = s
			return
		}
		for _, id := range ids {
			closed[id] = true
		}
		if len(ids) == 1 {
			errs = append(errs, &network.ResourceError{Kind: "port", ID: ids[0], Err: fmt.Errorf("security groups (port kept closed): %w", err)})
			return
		}
		open(ids[:len(ids)/2])
		open(ids[len(ids)/2:])
	}
	open(ports)
	return stats, errors.Join(errs...)
}

// usable returns st with what cannot be applied made closed, and an error
// for each such group or port.
func usable(st network.HostState) (network.HostState, []error) {
	var errs []error
	ids := map[string]bool{}
	for _, g := range st.SecurityGroups {
		ids[g.ID] = true
	}
	groups := make([]netspec.SecurityGroup, 0, len(st.SecurityGroups))
	seen := map[string]bool{}
	for _, g := range st.SecurityGroups {
		if seen[g.ID] {
			errs = append(errs, &network.ResourceError{Kind: "securitygroup", ID: g.ID, Err: errors.New("listed twice")})
			continue
		}
		seen[g.ID] = true
		if err := netspec.ValidateSecurityGroups([]netspec.SecurityGroup{g}); err != nil && !onlyRemotes(g, ids) {
			errs = append(errs, &network.ResourceError{Kind: "securitygroup", ID: g.ID, Err: fmt.Errorf("%w (its ports are kept closed)", err)})
			g = netspec.SecurityGroup{ID: g.ID}
		}
		groups = append(groups, g)
	}
	for _, p := range st.Ports {
		for _, g := range p.SecurityGroups {
			if !seen[g] {
				seen[g] = true
				groups = append(groups, netspec.SecurityGroup{ID: g})
				errs = append(errs, &network.ResourceError{Kind: "port", ID: p.ID, Err: fmt.Errorf("unknown security group %q (port kept closed)", g)})
			}
		}
	}
	st.SecurityGroups = groups
	return st, errs
}

// onlyRemotes reports whether g is valid once its remote groups are
// checked against all of ids rather than g alone.
func onlyRemotes(g netspec.SecurityGroup, ids map[string]bool) bool {
	all := []netspec.SecurityGroup{g}
	for _, r := range g.Rules {
		if r.RemoteGroup != "" && r.RemoteGroup != g.ID && ids[r.RemoteGroup] {
			all = append(all, netspec.SecurityGroup{ID: r.RemoteGroup})
		}
	}
	seen := map[string]bool{}
	var uniq []netspec.SecurityGroup
	for _, x := range all {
		if !seen[x.ID] {
			seen[x.ID] = true
			uniq = append(uniq, x)
		}
	}
	return netspec.ValidateSecurityGroups(uniq) == nil
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

// bridged reports whether a network of st has a filter bridge here.
func bridged(st network.HostState) bool {
	for _, n := range st.Networks {
		if n.FilterBridge() != "" {
			return true
		}
	}
	return false
}

// bridgeNetfilterOn makes bridged IPv4 and IPv6 traverse the inet hooks
// in the current namespace (br_netfilter), which stateful filtering needs.
func bridgeNetfilterOn() error {
	for _, p := range []string{"/proc/sys/net/bridge/bridge-nf-call-iptables", "/proc/sys/net/bridge/bridge-nf-call-ip6tables"} {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("read %s (br_netfilter needed): %w", p, err)
		}
		if strings.TrimSpace(string(b)) == "1" {
			continue
		}
		if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
			return err
		}
	}
	return nil
}
