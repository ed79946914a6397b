// Package endpoint plugs local ports into their networks: a namespace with a
// veth whose host side sits on the network's bridge. Tests use endpoints as
// instances; a VM tap on the same bridge is the same thing later.
package endpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/internal/nlink"
	"github.com/strata-infra/strata/pkg/netlinksafe"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
	"github.com/vishvananda/netlink"
)

// Config configures a Driver.
type Config struct {
	NetNS    string // the host's namespace; "" is the agent's own
	NSPrefix string // namespace prefix of this agent, e.g. "strata-h1-"
	Logger   *slog.Logger
	// Links, when set, is the pass's shared dump of the namespace's
	// links (nlink.LinkCache); without it the driver dumps them itself.
	Links *nlink.LinkCache
}

// Driver makes and removes endpoints.
type Driver struct {
	mu      sync.Mutex
	h       *netlink.Handle
	prefix  string // the agent's netns_prefix
	nsPart  string // netspec.EndpointNamespacePrefix: every endpoint namespace starts with it
	log     *slog.Logger
	changes atomic.Int64
	links   *nlink.LinkCache
}

var _ network.Driver = (*Driver)(nil)

// New opens a netlink handle in cfg.NetNS. It starts no goroutine.
func New(cfg Config) (*Driver, error) {
	if cfg.NSPrefix == "" {
		return nil, errors.New("endpoint: namespace prefix is empty")
	}
	h, err := netnsutil.Handle(cfg.NetNS)
	if err != nil {
		return nil, fmt.Errorf("endpoint: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{h: h, prefix: cfg.NSPrefix, nsPart: netspec.EndpointNamespacePrefix(cfg.NSPrefix), log: log.With("subsystem", "endpoint"), links: cfg.Links}, nil
}

// Namespace is the namespace of ep: ep.Namespace, or <prefix>ep-<port>.
func (d *Driver) Namespace(ep network.Endpoint) string {
	if ep.Namespace != "" {
		return ep.Namespace
	}
	return netspec.EndpointNamespace(d.prefix, ep.PortID)
}

// Changes counts the changes this driver has made.
func (d *Driver) Changes() int64 { return d.changes.Load() }

// Close releases the netlink handle; endpoints stay.
func (d *Driver) Close() error { return nlink.CloseHandle(&d.mu, &d.h) }

// Set converges the endpoints to st.LocalEndpoints and removes Strata's
// endpoints that are no longer wanted. An endpoint that fails is a
// network.ResourceError of its port; the rest go on. One st holds is
// neither made nor changed nor removed.
func (d *Driver) Set(ctx context.Context, st network.HostState) error {
	if err := st.Validate(); err != nil {
		return fmt.Errorf("endpoint: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.h == nil {
		return errors.New("endpoint: driver closed")
	}
	links, err := d.links.Links(d.h)
	if err != nil {
		return fmt.Errorf("endpoint: list links: %w", err)
	}
	ports := map[string]network.Port{}
	for _, p := range st.Ports {
		ports[p.ID] = p
	}
	nets := map[string]network.Network{}
	for _, n := range st.Networks {
		nets[n.ID] = n
	}
	var errs []error
	wantLinks, wantNS := map[string]bool{}, map[string]bool{}
	for _, ep := range st.LocalEndpoints {
		if err := ctx.Err(); err != nil {
			return err
		}
		port := ports[ep.PortID]
		wantLinks[network.EndpointVethName(port.ID)] = true
		wantNS[d.Namespace(ep)] = true
		if st.Held("port", ep.PortID) {
			continue // not plugged or changed now; an existing one stays
		}
		if err := d.ensure(ctx, ep, port, nets[port.NetworkID], links); err != nil {
			errs = append(errs, &network.ResourceError{Kind: "port", ID: ep.PortID, Err: fmt.Errorf("endpoint: %w", err)})
		}
	}
	errs = append(errs, d.removeStale(wantLinks, wantNS, links)...)
	if len(errs) > 0 {
		return fmt.Errorf("endpoint: %w", errors.Join(errs...))
	}
	return nil
}

func (d *Driver) ensure(ctx context.Context, ep network.Endpoint, port network.Port, n network.Network, links map[string]netlink.Link) error {
	ns := d.Namespace(ep)
	if !strings.HasPrefix(ns, d.nsPart) {
		return fmt.Errorf("namespace %q does not start with %q", ns, d.nsPart)
	}
	if ep.IfName == "" {
		ep.IfName = "eth0"
	}
	if len(ep.MAC) == 0 {
		ep.MAC = port.MAC
	}
	if _, err := n.Bridge(); err != nil {
		return err
	}
	// A port with security groups plugs into the network's filtered
	// bridge; any other into the network's switch (on an Open vSwitch
	// host, straight into the integration bridge).
	b := n.PortBinding(port)
	if !netnsutil.Exists(ns) {
		if err := netnsutil.Create(ns); err != nil {
			return err
		}
		d.changes.Add(1)
	}
	name := network.EndpointVethName(port.ID)
	l, ok := links[name]
	if ok && !nlink.Owned(l, network.EndpointVethPrefix) {
		return fmt.Errorf("link %q exists and is not Strata's", name)
	}
	mtu := nlink.MTU(n)
	if !ok {
		var err error
		if l, err = d.createVeth(name, ns, ep, mtu); err != nil {
			return fmt.Errorf("create veth %q: %w", name, err)
		}
		d.log.Info("created endpoint", "port", port.ID, "link", name, "netns", ns)
	}
	op := network.OVSPort{VNI: n.VNI, MACs: []net.HardwareAddr{ep.MAC}, NetNS: ns, IfName: ep.IfName, Created: !ok}
	if err := nlink.Attach(ctx, d.h, l, mtu, b, links, op, &d.changes); err != nil {
		return fmt.Errorf("veth %q: %w", name, err)
	}
	return d.ensureInside(ns, ep, mtu)
}

func (d *Driver) createVeth(name, ns string, ep network.Endpoint, mtu int) (netlink.Link, error) {
	v := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: name, MTU: mtu},
		PeerName:         ep.IfName,
		PeerHardwareAddr: ep.MAC,
	}
	return nlink.CreateVethIn(d.h, v, ns, network.Alias("port", ep.PortID), &d.changes)
}

// ensureInside brings lo and the endpoint's interface up inside its
// namespace and gives it its static address, if it has one.
func (d *Driver) ensureInside(ns string, ep network.Endpoint, mtu int) error {
	h, err := netnsutil.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo in %q: %w", ns, err)
	}
	if err := nlink.Fix(h, lo, 0, 0, &d.changes); err != nil {
		return fmt.Errorf("lo in %q: %w", ns, err)
	}
	l, err := h.LinkByName(ep.IfName)
	if err != nil {
		return fmt.Errorf("%q in %q: %w", ep.IfName, ns, err)
	}
	if l.Attrs().HardwareAddr.String() != ep.MAC.String() {
		if err := h.LinkSetHardwareAddr(l, ep.MAC); err != nil {
			return fmt.Errorf("set mac of %q in %q: %w", ep.IfName, ns, err)
		}
		d.changes.Add(1)
	}
	if err := nlink.Fix(h, l, mtu, 0, &d.changes); err != nil {
		return fmt.Errorf("%q in %q: %w", ep.IfName, ns, err)
	}
	if ep.DHCP || !ep.Addr.IsValid() {
		return nil
	}
	return d.ensureAddr(h, l, ep)
}

func (d *Driver) ensureAddr(h *netlink.Handle, l netlink.Link, ep network.Endpoint) error {
	addrs, err := netlinksafe.AddrList(h, l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses of %q: %w", ep.IfName, err)
	}
	for _, a := range addrs {
		if a.IP.Equal(ep.Addr.Addr().AsSlice()) {
			return nil
		}
	}
	ipn := &net.IPNet{IP: ep.Addr.Addr().AsSlice(), Mask: net.CIDRMask(ep.Addr.Bits(), ep.Addr.Addr().BitLen())}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("add %s to %q: %w", ep.Addr, ep.IfName, err)
	}
	d.changes.Add(1)
	return nil
}

// removeStale deletes Strata's endpoint veths and endpoint namespaces that
// are no longer wanted.
func (d *Driver) removeStale(wantLinks, wantNS map[string]bool, links map[string]netlink.Link) []error {
	var errs []error
	for name, l := range links {
		if wantLinks[name] || !nlink.Owned(l, network.EndpointVethPrefix) {
			continue
		}
		if err := d.h.LinkDel(l); err != nil && !nlink.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete veth %q: %w", name, err))
			continue
		}
		d.changes.Add(1)
		d.log.Info("deleted endpoint veth", "link", name)
	}
	deleted, nsErrs := netnsutil.DeleteUnwanted(d.nsPart, func(ns string) bool { return wantNS[ns] })
	for _, ns := range deleted {
		d.changes.Add(1)
		d.log.Info("deleted endpoint namespace", "netns", ns)
	}
	return append(errs, nsErrs...)
}
