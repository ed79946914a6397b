// Package linuxbridge is the host side of tenant L2 networks over a Linux
// bridge and a VXLAN device per network, with l2population: remote MACs and
// IPs come from the plan as static FDB and proxy-neighbour entries, and
// nothing is learned by flooding.
package linuxbridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/internal/nlink"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/vishvananda/netlink"
)

// Config configures a Driver.
type Config struct {
	// NetNS is the namespace holding the host's networking (a name or a
	// path); "" is the agent's own namespace.
	NetNS  string
	Logger *slog.Logger
	// Links, when set, is the pass's shared dump of the namespace's
	// links (nlink.LinkCache); without it the driver dumps them itself.
	Links *nlink.LinkCache
}

// Driver makes bridges, VXLAN devices and their l2population entries.
type Driver struct {
	mu      sync.Mutex
	h       *netlink.Handle
	log     *slog.Logger
	changes atomic.Int64
	linkc   *nlink.LinkCache
}

var _ network.L2 = (*Driver)(nil)

// Binding implements network.L2: a network's ports plug into its Linux
// bridge, sbr-<VNI>.
func (d *Driver) Binding(n network.Network) network.L2Binding { return Binding(n) }

// Binding is where a network's ports plug in with this driver.
func Binding(n network.Network) network.L2Binding {
	br := network.BridgeName(n.VNI)
	return network.L2Binding{Bridge: br, Type: network.L2LinuxBridge, Filtered: br}
}

// New opens a netlink handle in cfg.NetNS. It starts no goroutine.
func New(cfg Config) (*Driver, error) {
	h, err := netnsutil.Handle(cfg.NetNS)
	if err != nil {
		return nil, fmt.Errorf("linuxbridge: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{h: h, log: log.With("subsystem", "linuxbridge"), linkc: cfg.Links}, nil
}

// Changes counts the netlink changes this driver has made.
func (d *Driver) Changes() int64 { return d.changes.Load() }

// Close releases the netlink handle; the data plane stays as it is.
func (d *Driver) Close() error { return nlink.CloseHandle(&d.mu, &d.h) }

// Set converges bridges, VXLAN devices, FDB and proxy-neighbour entries to
// st. It goes on past a failing network and returns every error.
func (d *Driver) Set(ctx context.Context, st network.HostState) error {
	if err := st.Validate(); err != nil {
		return fmt.Errorf("linuxbridge: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.h == nil {
		return errors.New("linuxbridge: driver closed")
	}
	links, err := d.links()
	if err != nil {
		return err
	}
	underlay, err := d.underlayIndex(st.UnderlayDev, links)
	if err != nil {
		return err
	}
	nets := append([]network.Network(nil), st.Networks...)
	sort.Slice(nets, func(i, j int) bool { return nets[i].VNI < nets[j].VNI })
	var errs []error
	vxlans := make(map[uint32]netlink.Link, len(nets))
	want := make(map[uint32]bool, len(nets))
	for _, n := range nets {
		want[n.VNI] = true
		if err := ctx.Err(); err != nil {
			return err
		}
		if n.IsGRE() {
			// The kernel's gretap would need one device per remote host;
			// GRE networks are the ovs driver's.
			errs = append(errs, &network.ResourceError{Kind: "network", ID: n.ID,
				Err: errors.New("gre networks need the ovs L2 driver (network.driver: ovs) on this host")})
			continue
		}
		vx, err := d.ensureNetwork(devicesFor(n), st, underlay, links)
		if err != nil {
			errs = append(errs, fmt.Errorf("network %q: %w", n.ID, err))
			continue
		}
		vxlans[n.VNI] = vx
	}
	if err := d.syncTunnels(ctx, BuildPlan(st), vxlans); err != nil {
		errs = append(errs, err)
	}
	if err := d.removeStale(want, links); err != nil {
		errs = append(errs, err)
	}
	if err := joinErrs(errs); err != nil {
		return fmt.Errorf("linuxbridge: %w", err)
	}
	return nil
}

func (d *Driver) ensureNetwork(nd netDevices, st network.HostState, underlay int, links map[string]netlink.Link) (netlink.Link, error) {
	br, err := d.ensureBridge(nd, links)
	if err != nil {
		return nil, err
	}
	return d.ensureVXLAN(nd, st, underlay, br, links)
}

func (d *Driver) links() (map[string]netlink.Link, error) {
	m, err := d.linkc.Links(d.h)
	if err != nil {
		return nil, fmt.Errorf("linuxbridge: list links: %w", err)
	}
	return m, nil
}

func (d *Driver) underlayIndex(name string, links map[string]netlink.Link) (int, error) {
	if name == "" {
		return 0, nil
	}
	l, ok := links[name]
	if !ok {
		return 0, fmt.Errorf("linuxbridge: underlay device %q not found", name)
	}
	return l.Attrs().Index, nil
}

func joinErrs(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return errors.Join(errs...)
}
