// Package router is the host side of project routers (neutron's L3 agent
// with FWaaS): one namespace per router, veth legs into the tenant bridges
// and the external bridge, IP forwarding, routes, and one nft table per
// router holding NAT, the firewall chains and a stateful forward filter.
//
// Every Set computes the difference between the desired table and the one
// in the kernel and applies it as one nft batch; the table is never flushed,
// so an agent restart with the same plan changes nothing and open
// connections keep flowing.
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/internal/nlink"
	"github.com/strata-infra/strata/agent/network/nftsync"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
	"github.com/vishvananda/netlink"
)

// Config configures a Driver.
type Config struct {
	NetNS    string // the host's namespace; "" is the agent's own
	NSPrefix string // netspec.RouterNamespacePrefix of the agent's netns_prefix; DefaultNSPrefix when ""
	Logger   *slog.Logger
	// Links, when set, is the pass's shared dump of the namespace's
	// links (nlink.LinkCache); without it the driver dumps them itself.
	Links *nlink.LinkCache
}

// Driver makes routers. It is safe for concurrent use.
type Driver struct {
	mu      sync.Mutex
	h       *netlink.Handle
	prefix  string
	log     *slog.Logger
	changes atomic.Int64
	links   *nlink.LinkCache
	last    map[string]nftsync.Stats
	nft     *nftsync.Engine // what this driver last applied to each router's table
	fw      *Compilers      // what it compiled last for each router's firewall chains
	// beforeFlush, when set (tests only), runs on the conn before Sync
	// reads it, to make a batch fail.
	beforeFlush func(c *nftables.Conn)
}

var _ network.Driver = (*Driver)(nil)

// New opens a netlink handle in cfg.NetNS. It starts no goroutine.
func New(cfg Config) (*Driver, error) {
	h, err := netnsutil.Handle(cfg.NetNS)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := cfg.NSPrefix
	if p == "" {
		p = DefaultNSPrefix
	}
	return &Driver{h: h, prefix: p, log: log.With("subsystem", "router"), links: cfg.Links, last: map[string]nftsync.Stats{}, nft: nftsync.NewEngine(), fw: NewCompilers()}, nil
}

// Namespace is the namespace of router id.
func (d *Driver) Namespace(id string) string { return d.prefix + id }

// Changes counts the link, address, route and nft operations made.
func (d *Driver) Changes() int64 { return d.changes.Load() }

// LastSync returns what the last Set changed in router id's table.
func (d *Driver) LastSync(id string) nftsync.Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last[id]
}

// Close releases the netlink handle; routers keep forwarding.
func (d *Driver) Close() error { return nlink.CloseHandle(&d.mu, &d.h) }

// Set converges the routers to st.Routers: it makes or fixes each wanted
// router and removes Strata's routers that are no longer wanted. Invalid
// input changes nothing for that router. It goes on past a failing router
// and returns every error, each a network.ResourceError naming its router.
func (d *Driver) Set(ctx context.Context, st network.HostState) error {
	bridges := map[string]network.Network{}
	for _, n := range st.Networks {
		if n.L2.Bridge != "" {
			bridges[n.ID] = n
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.h == nil {
		return errors.New("router: driver closed")
	}
	links, err := d.hostLinks()
	if err != nil {
		return err
	}
	var errs []error
	want := map[string]bool{}
	fips := map[netip.Addr]string{}
	for _, r := range st.Routers {
		if err := ctx.Err(); err != nil {
			return err
		}
		// A router this host cannot apply is reported and left as it is
		// (removed only when it leaves the plan); the others go on.
		want[d.Namespace(r.ID)] = true
		if st.Held("router", r.ID) {
			continue // waits for its retry; left as it is
		}
		if err := check(r, bridges, fips); err != nil {
			errs = append(errs, &network.ResourceError{Kind: "router", ID: r.ID, Err: err})
			continue
		}
		if err := d.ensure(ctx, r, bridges, links); err != nil {
			errs = append(errs, &network.ResourceError{Kind: "router", ID: r.ID, Err: err})
		}
	}
	errs = append(errs, d.removeStale(st.Routers, want, links)...)
	d.fw.Forget(func(id string) bool { return want[d.Namespace(id)] })
	if len(errs) > 0 {
		return fmt.Errorf("router: %w", errors.Join(errs...))
	}
	return nil
}

func (d *Driver) ensure(ctx context.Context, r netspec.Router, bridges map[string]network.Network, links map[string]netlink.Link) error {
	ns := d.Namespace(r.ID)
	if !netnsutil.Exists(ns) {
		if err := netnsutil.Create(ns); err != nil {
			return err
		}
		d.changes.Add(1)
		d.log.Info("created router namespace", "router", r.ID, "netns", ns)
	}
	if err := tagNamespace(ns, r.ID); err != nil {
		return err
	}
	if err := d.ensureLegs(ctx, r, ns, bridges, links); err != nil {
		return err
	}
	if err := d.ensureInside(r, ns); err != nil {
		return err
	}
	return d.syncTable(r, ns)
}

// check validates one router against this host: its fields, its
// interfaces' networks being here, and its floating IPs not taken by a
// router checked before it.
func check(r netspec.Router, bridges map[string]network.Network, fips map[netip.Addr]string) error {
	if err := r.Validate(); err != nil {
		return err
	}
	for _, in := range r.Interfaces {
		if _, ok := bridges[in.NetworkID]; !ok {
			return fmt.Errorf("interface %q: network %q is not on this host", in.ID, in.NetworkID)
		}
	}
	for _, f := range r.FloatingIPs {
		if other, ok := fips[f.IP]; ok && other != r.ID {
			return fmt.Errorf("floating ip %s: already taken by router %q", f.IP, other)
		}
	}
	for _, f := range r.FloatingIPs {
		fips[f.IP] = r.ID
	}
	return nil
}

// syncTable applies the router's ruleset diff as one batch.
func (d *Driver) syncTable(r netspec.Router, ns string) error {
	f, err := os.Open(netnsutil.Path(ns))
	if err != nil {
		return fmt.Errorf("open netns %q: %w", ns, err)
	}
	defer f.Close()
	c, err := nftsync.Open(int(f.Fd()))
	if err != nil {
		return fmt.Errorf("nftables in %q: %w", ns, err)
	}
	if d.beforeFlush != nil {
		d.beforeFlush(c)
	}
	stats, err := d.nft.Sync(c, d.fw.Ruleset(r))
	d.last[r.ID] = stats
	d.changes.Add(int64(stats.Ops()))
	if err != nil {
		return fmt.Errorf("nft table %q in %q: %w", TableName, ns, err)
	}
	if stats.Ops() > 0 {
		d.log.Info("applied router ruleset", "router", r.ID, "rules_added", stats.RulesAdded,
			"rules_deleted", stats.RulesDeleted, "elements_added", stats.ElemsAdded, "elements_deleted", stats.ElemsDeleted)
	}
	return nil
}

func (d *Driver) hostLinks() (map[string]netlink.Link, error) {
	links, err := d.links.Links(d.h)
	if err != nil {
		return nil, fmt.Errorf("router: list links: %w", err)
	}
	return links, nil
}

// removeStale deletes the namespaces (with their legs) of routers that are
// no longer wanted, and host legs of ours that no wanted router uses.
func (d *Driver) removeStale(routers []netspec.Router, want map[string]bool, links map[string]netlink.Link) []error {
	var errs []error
	legs := map[string]bool{}
	for _, r := range routers {
		legs[HostGatewayLeg(r.ID)] = r.Gateway != nil
		for _, in := range r.Interfaces {
			legs[HostInternalLeg(r.ID, in.ID)] = true
		}
	}
	for name, l := range links {
		if legs[name] || !(nlink.Owned(l, HostInternalPrefix) || nlink.Owned(l, HostGatewayPrefix)) ||
			!strings.HasPrefix(l.Attrs().Alias, network.Alias("router", "")) {
			continue
		}
		if err := d.h.LinkDel(l); err != nil && !nlink.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete leg %q: %w", name, err))
			continue
		}
		d.changes.Add(1)
	}
	deleted, nsErrs := netnsutil.DeleteUnwanted(d.prefix, func(ns string) bool { return want[ns] || !d.isRouterNS(ns) })
	for _, ns := range deleted {
		d.changes.Add(1)
		d.log.Info("deleted router namespace", "netns", ns)
	}
	return append(errs, nsErrs...)
}

// nsTag is the alias of a router namespace's loopback: it marks the
// namespace as one this driver made before anything else goes in, so a
// router that failed half-way (no table yet) is still removed with its
// resource, whatever is inside.
func nsTag(id string) string { return network.Alias("router", id) }

func tagNamespace(ns, id string) error {
	h, err := netnsutil.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback in %q: %w", ns, err)
	}
	if lo.Attrs().Alias == nsTag(id) {
		return nil
	}
	if err := h.LinkSetAlias(lo, nsTag(id)); err != nil {
		return fmt.Errorf("tag namespace %q: %w", ns, err)
	}
	return nil
}

// isRouterNS reports whether ns is one this driver made: tagged, or (made
// before tags) holding our table. A namespace that merely shares the
// prefix (another driver's, when prefixes nest) is left alone.
func (d *Driver) isRouterNS(ns string) bool {
	if h, err := netnsutil.Handle(ns); err == nil {
		lo, err := h.LinkByName("lo")
		h.Close()
		if err == nil && strings.HasPrefix(lo.Attrs().Alias, nsTag("")) {
			return true
		}
	}
	f, err := os.Open(netnsutil.Path(ns))
	if err != nil {
		return false
	}
	defer f.Close()
	c, err := nftsync.Open(int(f.Fd()))
	if err != nil {
		return false
	}
	t, err := c.ListTableOfFamily(TableName, nftables.TableFamilyIPv4)
	return err == nil && t != nil
}
