// Package ovs is the host side of tenant L2 networks over Open vSwitch: one
// integration bridge with a local VLAN per network, VXLAN and GRE tunnel
// ports (key = segmentation ID) to exactly the remote hosts that share a
// network, and l2population as OpenFlow 1.3 flows: a known remote MAC goes
// straight to its host's tunnel, broadcast and unknown unicast only to the
// hosts that have the network, ARP for known remote ports answered on the
// host. The bridge is fail_mode=secure and no flow uses NORMAL.
//
// OVSDB is spoken through libovsdb (models for the four tables used, a
// monitored cache, reconnects when ovsdb-server restarts); flows go in
// through `ovs-ofctl --bundle replace-flows`, one atomic bundle tagged with
// a new generation cookie, and only when the wanted set differs from the
// installed one: an agent restart changes no flow. A canary flow tells
// Watch that ovs-vswitchd lost its flows (a restart), and they are put back
// before other_config:flow-restore-wait is cleared.
package ovs

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/internal/nlink"
	"github.com/strata-infra/strata/pkg/netlinksafe"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/strata-infra/strata/pkg/netspec"
	"github.com/vishvananda/netlink"
)

// Config configures a Driver.
type Config struct {
	// NetNS is the namespace holding the host's networking; "" is the
	// agent's own.
	NetNS string
	// DB is the OVSDB endpoint; default unix:/run/openvswitch/db.sock.
	DB string
	// RunDir holds the bridge's OpenFlow socket <bridge>.mgmt; default
	// /run/openvswitch.
	RunDir string
	// Bridge is the integration bridge; default DefaultBridge.
	Bridge string
	// Datapath is "system" (kernel) or "netdev" (userspace); "" detects.
	Datapath string
	// Ofctl is the ovs-ofctl binary; default "ovs-ofctl".
	Ofctl string
	// PortWait bounds how long Set waits for ovs-vswitchd to give new
	// ports their OpenFlow numbers; default 15 s (a pass that fails is
	// retried).
	PortWait time.Duration
	Logger   *slog.Logger
}

// DefaultBridge is the integration bridge's name.
const DefaultBridge = "strata-int"

// Driver converges the integration bridge, its ports and flows.
type Driver struct {
	mu       sync.Mutex
	h        *netlink.Handle
	netns    string
	db       *db
	of       ofctl
	bridge   string
	datapath string
	dpWhy    string
	dpid     string
	portWait time.Duration
	log      *slog.Logger
	changes  atomic.Int64
	applies  atomic.Int64
	restores atomic.Int64
	gen      uint32
	last     *network.HostState
	// The local VLAN of each network, and the instance taps expected on
	// the bridge but not there yet, as of the last pass.
	lvids map[uint32]int
	taps  map[string]bool
	// flowed are the ports the flows last applied include.
	flowed map[string]bool
	// The size and duration of the last flow bundle applied.
	lastFlows int
	lastTook  time.Duration
}

var _ network.L2 = (*Driver)(nil)

// Binding implements network.L2. Every port of a network plugs straight
// into the integration bridge (libvirt's <virtualport type='openvswitch'>,
// or through PlugPort), on the network's local VLAN; the security groups
// of those that have them are the bridge's firewall flows (firewall.go).
func (d *Driver) Binding(n network.Network) network.L2Binding {
	b := Binding(n)
	b.Bridge, b.Plug = d.bridge, d
	b.FullChecksums = d.datapath == "netdev"
	return b
}

// Binding is where a network's ports plug in with this driver on the
// default integration bridge, without a Plugger (for checks and tests).
func Binding(n network.Network) network.L2Binding {
	return network.L2Binding{Bridge: DefaultBridge, Type: network.L2OpenVSwitch}
}

// PlugPort implements network.Plugger: it adds link p.Link to the
// integration bridge as a port of network p.VNI, on the network's local
// VLAN, and applies the flows that include it. The network must be in the
// state of the last Set. Plugging a port that is in place changes
// nothing.
func (d *Driver) PlugPort(ctx context.Context, p network.OVSPort) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.h == nil || d.db == nil {
		return errors.New("ovs: driver closed")
	}
	lvid, ok := d.lvids[p.VNI]
	if d.last == nil || !ok {
		return fmt.Errorf("ovs: plug %q: network %d is not set up on this host", p.Link, p.VNI)
	}
	if p.Created && d.datapath == "netdev" && p.NetNS != "" {
		// The userspace datapath reads what the namespace's stack sends
		// as it is: checksums must be complete where it leaves.
		if err := nlink.TxChecksumOff(p.NetNS, p.IfName); err != nil {
			return fmt.Errorf("ovs: plug %q: %w", p.Link, err)
		}
	}
	s, err := d.db.read(ctx, d.bridge)
	if err != nil {
		return fmt.Errorf("ovs: %w", err)
	}
	if s.bridge == nil {
		return fmt.Errorf("ovs: plug %q: no bridge %q", p.Link, d.bridge)
	}
	t := &tx{d: d.db}
	if err := t.ensurePort(s, s.bridge.UUID, wantPort{name: p.Link, tag: lvid, kind: kindLocal, vni: p.VNI, macs: macList(p.MACs)}); err != nil {
		return fmt.Errorf("ovs: plug %q: %w", p.Link, err)
	}
	if err := t.commit(ctx); err != nil {
		return fmt.Errorf("ovs: plug %q: %w", p.Link, err)
	}
	if len(t.ops) == 0 && d.flowed[p.Link] {
		return nil // in place, and in the flows
	}
	if len(t.ops) > 0 {
		d.changes.Add(1)
		d.log.Info("plugged port", "port", p.Link, "vni", p.VNI, "vlan", lvid)
	}
	if err := d.set(ctx, *d.last); err != nil {
		return fmt.Errorf("ovs: plug %q: %w", p.Link, err)
	}
	return nil
}

// New connects to OVSDB and opens a netlink handle. It starts no goroutine
// of its own beyond libovsdb's connection; run Watch for the canary.
func New(ctx context.Context, cfg Config) (*Driver, error) {
	if cfg.DB == "" {
		cfg.DB = "unix:/run/openvswitch/db.sock"
	}
	if cfg.RunDir == "" {
		cfg.RunDir = "/run/openvswitch"
	}
	if cfg.Bridge == "" {
		cfg.Bridge = DefaultBridge
	}
	if cfg.Ofctl == "" {
		cfg.Ofctl = "ovs-ofctl"
	}
	if cfg.PortWait <= 0 {
		cfg.PortWait = 15 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dp, why := cfg.Datapath, "configured"
	if dp == "" {
		dp, why = DetectDatapath()
	}
	if dp != "system" && dp != "netdev" {
		return nil, fmt.Errorf("ovs: datapath %q is not system or netdev", dp)
	}
	h, err := netnsutil.Handle(cfg.NetNS)
	if err != nil {
		return nil, fmt.Errorf("ovs: %w", err)
	}
	c, err := dialDB(ctx, cfg.DB)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("ovs: %w", err)
	}
	d := &Driver{
		h: h, netns: cfg.NetNS, db: c, bridge: cfg.Bridge, datapath: dp, dpWhy: why,
		of:       ofctl{bin: cfg.Ofctl, target: "unix:" + filepath.Join(cfg.RunDir, cfg.Bridge+".mgmt")},
		dpid:     datapathID(cfg.Bridge, cfg.NetNS),
		portWait: cfg.PortWait,
		log:      log.With("subsystem", "ovs", "bridge", cfg.Bridge),
	}
	d.log.Info("ovs driver ready", "datapath", dp, "why", why)
	return d, nil
}

// DetectDatapath says which datapath this host can run: "system" when the
// kernel has the openvswitch module, else "netdev" (userspace), and why.
func DetectDatapath() (string, string) {
	if _, err := netlink.GenlFamilyGet("ovs_datapath"); err == nil {
		return "system", "the kernel's openvswitch datapath is loaded"
	}
	if u, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		if _, err := os.Stat(filepath.Join("/lib/modules", string(trimNL(u)), "kernel/net/openvswitch")); err == nil {
			return "system", "the kernel has an openvswitch module"
		}
	}
	return "netdev", "the kernel has no openvswitch module: userspace datapath"
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// datapathID pins the bridge's datapath ID, so adding ports does not change
// it (and drop the OpenFlow connection) as OVS's MAC-derived default would.
func datapathID(bridge, netns string) string {
	h := fnv.New64a()
	h.Write([]byte(bridge + "\x00" + netns))
	return fmt.Sprintf("%016x", h.Sum64()&0x0000ffffffffffff|0x5300000000000000)
}

// Datapath is the datapath type the bridge uses ("system" or "netdev").
func (d *Driver) Datapath() string { return d.datapath }

// DatapathReason says why the datapath was chosen.
func (d *Driver) DatapathReason() string { return d.dpWhy }

// Changes counts the changes this driver made: links, OVSDB transactions
// and flow bundles.
func (d *Driver) Changes() int64 { return d.changes.Load() }

// FlowApplies counts the flow bundles applied.
func (d *Driver) FlowApplies() int64 { return d.applies.Load() }

// Restores counts the times Watch found the flows lost and put them back.
func (d *Driver) Restores() int64 { return d.restores.Load() }

// Generation is the generation of the flows last applied or found.
func (d *Driver) Generation() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gen
}

// LastFlowApply is the number of flows in the last bundle applied and how
// long ovs-ofctl took to apply it.
func (d *Driver) LastFlowApply() (int, time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastFlows, d.lastTook
}

// DumpFlows returns the integration bridge's flows without statistics.
func (d *Driver) DumpFlows(ctx context.Context) (string, error) { return d.of.Dump(ctx) }

// Close disconnects from OVSDB and releases the netlink handle; bridges,
// ports and flows stay as they are.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.db != nil {
		d.db.close()
		d.db = nil
	}
	d.mu.Unlock()
	return nlink.CloseHandle(&d.mu, &d.h)
}

// Set converges the Linux bridges, the integration bridge's ports and its
// flows to st. It goes on past a failing network and returns every error.
func (d *Driver) Set(ctx context.Context, st network.HostState) error {
	if err := st.Validate(); err != nil {
		return fmt.Errorf("ovs: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.h == nil || d.db == nil {
		return errors.New("ovs: driver closed")
	}
	err := d.set(ctx, st)
	if err == nil {
		cp := st
		d.last = &cp
	}
	if err != nil {
		return fmt.Errorf("ovs: %w", err)
	}
	return nil
}

func (d *Driver) set(ctx context.Context, st network.HostState) error {
	list, err := netlinksafe.LinkList(d.h)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	links := make(map[string]netlink.Link, len(list))
	for _, l := range list {
		links[l.Attrs().Name] = l
	}
	nets := append([]network.Network(nil), st.Networks...)
	sort.Slice(nets, func(i, j int) bool { return nets[i].VNI < nets[j].VNI })
	// The hybrid Linux bridges of an older agent go: security groups are
	// flows on the integration bridge now.
	before := d.changes.Load()
	errs := d.removeStaleLinux(links)
	if len(errs) > 0 || d.changes.Load() != before {
		if list, err = netlinksafe.LinkList(d.h); err != nil {
			return errors.Join(append(errs, fmt.Errorf("list links: %w", err))...)
		}
		links = make(map[string]netlink.Link, len(list))
		for _, l := range list {
			links[l.Attrs().Name] = l
		}
	}
	ready := nets
	if err := d.converge(ctx, st, ready, links); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// converge makes the integration bridge's ports, then its flows.
func (d *Driver) converge(ctx context.Context, st network.HostState, nets []network.Network, links map[string]netlink.Link) error {
	s, err := d.db.read(ctx, d.bridge)
	if err != nil {
		return err
	}
	t := &tx{d: d.db}
	brUUID, err := t.ensureBridge(s, wantBridge{name: d.bridge, datapath: d.datapath, dpid: d.dpid})
	if err != nil {
		return err
	}
	lay := buildLayout(st, nets, s.ports, links)
	d.lvids, d.taps = lay.lvids, lay.taps
	for name, p := range s.ports {
		if _, ok := lay.ports[name]; ok || !owned(p.ExternalIDs) || p.ExternalIDs[kindKey] == "" {
			continue
		}
		if _, there := links[name]; there && p.ExternalIDs[kindKey] == kindTap {
			continue // libvirt's: it goes with its domain
		}
		if err := t.deletePort(brUUID, p); err != nil {
			return fmt.Errorf("delete port %q: %w", name, err)
		}
		d.log.Info("deleting port", "port", name)
	}
	names := make([]string, 0, len(lay.ports))
	for name := range lay.ports {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := t.ensurePort(s, brUUID, lay.ports[name]); err != nil {
			return fmt.Errorf("port %q: %w", name, err)
		}
	}
	if err := t.commit(ctx); err != nil {
		return err
	}
	if len(t.ops) > 0 {
		d.changes.Add(1)
	}
	s, ofports, err := d.waitOfports(ctx, names)
	if err != nil {
		return err
	}
	if err := d.applyFlows(ctx, s, lay.flows(ofports)); err != nil {
		return err
	}
	d.flowed = map[string]bool{}
	for name := range ofports {
		d.flowed[name] = true
	}
	// Ports whose groups cannot be applied are in the flows, closed.
	return errors.Join(lay.errs...)
}

// waitOfports waits until ovs-vswitchd has given every named port an
// OpenFlow port number, and returns the snapshot that shows them.
func (d *Driver) waitOfports(ctx context.Context, names []string) (snapshot, map[string]int, error) {
	deadline := time.Now().Add(d.portWait)
	for {
		s, err := d.db.read(ctx, d.bridge)
		if err != nil {
			return s, nil, err
		}
		ofports := map[string]int{}
		var missing []string
		for _, n := range names {
			i, ok := s.ifaces[n]
			if ok && i.Ofport != nil && *i.Ofport > 0 {
				ofports[n] = *i.Ofport
				continue
			}
			why := "no ofport yet"
			if ok && i.Error != nil {
				why = *i.Error
			}
			missing = append(missing, n+": "+why)
		}
		if len(missing) == 0 && s.bridge != nil {
			return s, ofports, nil
		}
		if time.Now().After(deadline) {
			return s, nil, fmt.Errorf("ports without an OpenFlow port (is ovs-vswitchd running?): %v", missing)
		}
		select {
		case <-ctx.Done():
			return s, nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// applyFlows installs flows as a new generation unless exactly that set of
// the recorded generation is what the bridge has.
func (d *Driver) applyFlows(ctx context.Context, s snapshot, flows []string) error {
	hash := FlowsHash(flows)
	gen64, _ := strconv.ParseUint(s.bridge.ExternalIDs[genKey], 10, 32)
	gen := uint32(gen64)
	if s.bridge.ExternalIDs[hashKey] == hash {
		n, err := d.of.CountFlows(ctx, allFlows, genFlows(tableAll, gen))
		if err != nil {
			return err
		}
		total, ours := n[0], n[1]
		if total == len(flows) && ours == len(flows) {
			d.gen = gen
			return d.clearRestoreWait(ctx, s)
		}
	}
	gen++
	start := time.Now()
	if err := d.of.Replace(ctx, WithCookie(flows, gen)); err != nil {
		return err
	}
	d.lastFlows, d.lastTook = len(flows), time.Since(start)
	d.applies.Add(1)
	d.changes.Add(1)
	t := &tx{d: d.db}
	if err := t.setBridgeIDs(*s.bridge, map[string]string{genKey: strconv.FormatUint(uint64(gen), 10), hashKey: hash}); err != nil {
		return err
	}
	if err := t.commit(ctx); err != nil {
		return err
	}
	d.gen = gen
	d.log.Info("flows applied", "generation", gen, "flows", len(flows), "took", time.Since(start))
	return d.clearRestoreWait(ctx, s)
}

func (d *Driver) clearRestoreWait(ctx context.Context, s snapshot) error {
	cleared, err := d.db.clearFlowRestoreWait(ctx, s.root)
	if cleared {
		d.changes.Add(1)
		d.log.Info("flows in place: cleared flow-restore-wait")
	}
	return err
}

// Watch checks the canary flow every interval until ctx ends: when the
// current generation's canary is gone, ovs-vswitchd has lost its flows (it
// restarted), and the last state is applied again.
func (d *Driver) Watch(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	lost := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := d.adoptTaps(ctx); err != nil {
			d.log.Warn("adopting instance taps failed, retrying", "err", err)
		}
		restored, err := d.checkCanary(ctx)
		if err != nil {
			if !lost {
				d.log.Warn("canary flow gone; restoring flows failed, retrying", "err", err)
			}
			lost = true
			continue
		}
		if !restored {
			continue
		}
		lost = false
		d.restores.Add(1)
		d.log.Info("flows restored", "generation", d.Generation())
	}
}

// adoptTaps applies the last state again when an instance tap it expects
// (libvirt adds it to the bridge when the domain starts) has appeared, so
// that the tap gets its network's VLAN and flows.
func (d *Driver) adoptTaps(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil || d.h == nil || d.db == nil || len(d.taps) == 0 {
		return nil
	}
	s, err := d.db.read(ctx, d.bridge)
	if err != nil {
		return err
	}
	for tap := range d.taps {
		if _, on := s.ports[tap]; on {
			d.log.Info("instance tap on the bridge: adopting it", "tap", tap)
			return d.set(ctx, *d.last)
		}
	}
	return nil
}

// checkCanary restores the last state's flows when the current
// generation's canary is gone. It holds the driver's lock throughout, so
// it never re-applies a state an overlapping Set has replaced.
func (d *Driver) checkCanary(ctx context.Context) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil || d.h == nil || d.db == nil {
		return false, nil
	}
	n, err := d.of.CountFlows(ctx, genFlows(TableCanary, d.gen))
	if (err == nil && n[0] == 1) || ctx.Err() != nil {
		return false, nil // in place, or Watch is ending: not a loss
	}
	d.log.Warn("canary flow gone: restoring flows", "generation", d.gen, "err", err)
	if err := d.set(ctx, *d.last); err != nil {
		return false, err
	}
	return true, nil
}

// tunnelName is the port of the tunnel of type typ to vtep
// (netspec.TunnelPortName).
func tunnelName(typ string, vtep netip.Addr) string {
	return netspec.TunnelPortName(typ == TypeGRE, vtep)
}
