// Package provider bridges the host's physical networks: for every
// physical network the agent's config maps to a host interface, a Linux
// bridge (sbe-<physnet>) with that interface in it. Router gateways and
// floating IPs live on these flat provider networks.
package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/internal/nlink"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
)

// BridgePrefix names provider bridges.
const BridgePrefix = network.ProviderPrefix

// BridgeName is the bridge of a physical network, e.g. "sbe-physnet1".
func BridgeName(physnet string) string { return network.ProviderBridgeName(physnet) }

// Config configures a Driver.
type Config struct {
	NetNS string
	// Mappings maps physical network names to host interfaces.
	Mappings map[string]string
	Logger   *slog.Logger
	// Links, when set, is the pass's shared dump of the namespace's
	// links (nlink.LinkCache); without it the driver dumps them itself.
	Links *nlink.LinkCache
}

// Driver keeps the provider bridges.
type Driver struct {
	mu       sync.Mutex
	h        *netlink.Handle
	mappings map[string]string
	log      *slog.Logger
	changes  atomic.Int64
	links    *nlink.LinkCache
}

var _ network.Driver = (*Driver)(nil)

// New opens a netlink handle; it starts no goroutine.
func New(cfg Config) (*Driver, error) {
	for physnet, dev := range cfg.Mappings {
		if netspec.CheckNames(netspec.PhysnetNames(physnet)) != nil || physnet == "" || dev == "" {
			return nil, fmt.Errorf("provider: mapping %q=%q: physical network must be 1..%d characters and the device set", physnet, dev, netspec.MaxPhysnetLen)
		}
	}
	h, err := netnsutil.Handle(cfg.NetNS)
	if err != nil {
		return nil, fmt.Errorf("provider: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{h: h, mappings: cfg.Mappings, log: log.With("subsystem", "provider"), links: cfg.Links}, nil
}

// Changes counts the netlink changes made.
func (d *Driver) Changes() int64 { return d.changes.Load() }

// Close releases the handle; the bridges stay.
func (d *Driver) Close() error { return nlink.CloseHandle(&d.mu, &d.h) }

// Set makes every mapped bridge and puts its interface in it; provider
// bridges no longer mapped are removed (the interface is released, not
// deleted). The host state is not needed: mappings are host config.
func (d *Driver) Set(ctx context.Context, _ network.HostState) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.h == nil {
		return errors.New("provider: driver closed")
	}
	byName, err := d.links.Links(d.h)
	if err != nil {
		return fmt.Errorf("provider: list links: %w", err)
	}
	physnets := make([]string, 0, len(d.mappings))
	for p := range d.mappings {
		physnets = append(physnets, p)
	}
	sort.Strings(physnets)
	var errs []error
	want := map[string]bool{}
	for _, p := range physnets {
		want[BridgeName(p)] = true
		if err := d.ensure(p, d.mappings[p], byName); err != nil {
			errs = append(errs, fmt.Errorf("provider %q: %w", p, err))
		}
	}
	for name, l := range byName {
		if nlink.Owned(l, BridgePrefix) && !want[name] {
			if err := d.h.LinkDel(l); err != nil && !nlink.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("provider: delete stale %q: %w", name, err))
			}
			d.changes.Add(1)
		}
	}
	return errors.Join(errs...)
}

func (d *Driver) ensure(physnet, dev string, links map[string]netlink.Link) error {
	name := BridgeName(physnet)
	br, ok := links[name]
	if ok && !nlink.Owned(br, BridgePrefix) {
		return fmt.Errorf("link %q exists and is not Strata's", name)
	}
	if !ok {
		var err error
		br, err = nlink.Create(d.h, &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}, network.Alias("provider", physnet), &d.changes)
		if err != nil {
			return fmt.Errorf("create bridge %q: %w", name, err)
		}
		d.log.Info("provider bridge created", "bridge", name, "device", dev)
	}
	if err := nlink.Fix(d.h, br, 0, 0, &d.changes); err != nil {
		return fmt.Errorf("bridge %q: %w", name, err)
	}
	l, ok := links[dev]
	if !ok {
		return fmt.Errorf("device %q (mapped to physical network %q) does not exist", dev, physnet)
	}
	return nlink.Fix(d.h, l, 0, br.Attrs().Index, &d.changes)
}
