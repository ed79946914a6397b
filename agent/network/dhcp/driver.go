// Package dhcp runs one dnsmasq per network that has a DHCP port on this
// host, in namespace <prefix>dhcp-<network>, plugged into the network's
// bridge with a veth carrying the DHCP port's MAC and addresses. Fixed
// MAC->IP bindings and DNS names come from the ports; dnsmasq rereads them
// on SIGHUP. A supervisor restarts a dnsmasq that died; after an agent
// restart the running dnsmasq is adopted by its pid file, not restarted.
package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/internal/nlink"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netnsutil"
	"github.com/vishvananda/netlink"
)

// Config configures a Driver.
type Config struct {
	NetNS    string // the host's namespace; "" is the agent's own
	NSPrefix string // namespace prefix of this agent, e.g. "strata-h1-"
	StateDir string // leases, pid files and rendered files, one directory per network
	Domain   string // DNS domain of port names; default "strata.internal"
	Dnsmasq  string // binary; default "dnsmasq" from PATH
	// User dnsmasq drops to after start (DefaultUser when empty); when it
	// does not exist, Debian's "dnsmasq", then "nobody". Never root.
	User   string
	Logger *slog.Logger
	// Restarted, when set, is called after the supervisor restarted a
	// dnsmasq (it died or hung), so the host status says so at once, not
	// at the next periodic report. It must not block.
	Restarted func()
	// Links, when set, is the pass's shared dump of the namespace's
	// links (nlink.LinkCache); without it the driver dumps them itself.
	Links *nlink.LinkCache
}

// Counters say what the driver did to dnsmasq processes. Restarts counts
// the supervisor's (died or hung), Hung those of a live but hung dnsmasq.
type Counters struct {
	Starts, Restarts, Reloads, Stops, LinkChanges, Hung int64
}

// Driver manages the dnsmasq instances of one host.
type Driver struct {
	cfg  Config
	as   runAs // who dnsmasq runs as
	h    *netlink.Handle
	log  *slog.Logger
	mu   sync.Mutex
	runs map[string]*instance // by network ID

	starts, restarts, reloads, stops, linkChanges, hung atomic.Int64
}

// instance is the wanted dnsmasq of one network.
type instance struct {
	netID, ns, dir string
	args           []string
	proc           *process
	probeAddr      netip.Addr // the DHCP port's address, where DNS is probed
	failures       int        // consecutive failed liveness probes
	restarts       int        // by the supervisor: died or hung
	lastRestart    time.Time
	lastReason     string
}

// Liveness: a dnsmasq that answers no DNS probe HungAfter times in a row
// (one probe per supervisor tick, each waiting ProbeTimeout) is hung, and
// is killed and restarted.
const (
	HungAfter    = 3
	ProbeTimeout = time.Second
)

var _ network.Driver = (*Driver)(nil)

// New opens a netlink handle in cfg.NetNS and makes the state directory. It
// starts no goroutine: run Supervise for restarts.
func New(cfg Config) (*Driver, error) {
	if cfg.NSPrefix == "" || cfg.StateDir == "" {
		return nil, errors.New("dhcp: namespace prefix and state dir are required")
	}
	if cfg.Domain == "" {
		cfg.Domain = "strata.internal"
	}
	if cfg.Dnsmasq == "" {
		bin, err := lookDnsmasq()
		if err != nil {
			return nil, err
		}
		cfg.Dnsmasq = bin
	}
	if cfg.User == "" {
		cfg.User = DefaultUser
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("subsystem", "dhcp")
	as, err := lookupRunAs(cfg.User)
	if err != nil {
		return nil, err
	}
	if as.user != cfg.User {
		log.Warn("dnsmasq user does not exist; using another unprivileged user", "want", cfg.User, "user", as.user, "group", as.group)
	}
	if err := as.shareDir(cfg.StateDir, 0o710); err != nil {
		return nil, fmt.Errorf("dhcp: state dir: %w", err)
	}
	if err := as.checkReach(cfg.StateDir); err != nil {
		return nil, err
	}
	h, err := netnsutil.Handle(cfg.NetNS)
	if err != nil {
		return nil, fmt.Errorf("dhcp: %w", err)
	}
	return &Driver{cfg: cfg, as: as, h: h, log: log, runs: map[string]*instance{}}, nil
}

func lookDnsmasq() (string, error) {
	for _, p := range []string{"/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("dhcp: dnsmasq not found (apt-get install dnsmasq)")
}

// Counters returns what the driver has done so far.
func (d *Driver) Counters() Counters {
	return Counters{d.starts.Load(), d.restarts.Load(), d.reloads.Load(), d.stops.Load(), d.linkChanges.Load(), d.hung.Load()}
}

// Namespace is the namespace of network networkID's dnsmasq.
func (d *Driver) Namespace(networkID string) string {
	return network.DHCPNamespace(d.cfg.NSPrefix, networkID)
}

// Close releases the netlink handle. dnsmasq processes keep running and are
// adopted by the next driver.
func (d *Driver) Close() error { return nlink.CloseHandle(&d.mu, &d.h) }

// Set runs a dnsmasq for every network with a local DHCP port and a DHCP
// subnet, and stops those of networks no longer wanted. A network whose
// DHCP fails is a network.ResourceError; the rest go on. One st holds is
// left as it is.
func (d *Driver) Set(ctx context.Context, st network.HostState) error {
	if err := st.Validate(); err != nil {
		return fmt.Errorf("dhcp: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.h == nil {
		return errors.New("dhcp: driver closed")
	}
	want := wanted(st)
	var errs []error
	for _, w := range want {
		if err := ctx.Err(); err != nil {
			return err
		}
		if st.Held("network", w.net.ID) {
			continue // waits for its retry; its dnsmasq stays as it is
		}
		if err := d.ensure(ctx, w); err != nil {
			errs = append(errs, &network.ResourceError{Kind: "network", ID: w.net.ID, Err: fmt.Errorf("dhcp: %w", err)})
		}
	}
	errs = append(errs, d.removeStale(want)...)
	return errors.Join(errs...)
}

// served is one network this host serves DHCP for.
type served struct {
	net   network.Network
	port  network.Port   // the local DHCP port
	ports []network.Port // all ports of the network
}

func wanted(st network.HostState) map[string]served {
	out := map[string]served{}
	nets := map[string]network.Network{}
	for _, n := range st.Networks {
		if len(dhcpSubnets(n)) > 0 {
			nets[n.ID] = n
		}
	}
	for _, p := range st.Ports {
		if n, ok := nets[p.NetworkID]; ok && p.Host == st.Host && p.Owner == network.OwnerDHCP {
			out[n.ID] = served{net: n, port: p}
		}
	}
	for _, p := range st.Ports {
		if s, ok := out[p.NetworkID]; ok {
			s.ports = append(s.ports, p)
			out[p.NetworkID] = s
		}
	}
	return out
}

func (d *Driver) ensure(ctx context.Context, w served) error {
	ns := d.Namespace(w.net.ID)
	if err := d.ensureLinks(ctx, ns, w); err != nil {
		return err
	}
	dir := filepath.Join(d.cfg.StateDir, w.net.ID)
	before := oldHosts(dir)
	changed, err := d.writeFiles(dir, w)
	if err != nil {
		return err
	}
	inst := d.runs[w.net.ID]
	if inst == nil {
		inst = &instance{netID: w.net.ID, ns: ns, dir: dir}
		d.runs[w.net.ID] = inst
	}
	inst.args = Args(w.net, dir, d.cfg.Domain, d.as.user, d.as.group)
	inst.probeAddr = probeAddr(w.port)
	if err := d.converge(inst, changed); err != nil {
		return err
	}
	// After the reload, so dnsmasq no longer holds the old host lines.
	return d.release(ns, goneLeases(before, HostsFile(w.net, w.ports)))
}

// converge adopts, starts, restarts or reloads the dnsmasq of inst.
func (d *Driver) converge(inst *instance, filesChanged bool) error {
	log := d.log.With("network", inst.netID, "netns", inst.ns)
	if inst.proc == nil || !inst.proc.alive(inst.dir) {
		p, argv := adopt(inst.dir)
		if p != nil && slices.Equal(argv, inst.args) {
			inst.proc = p
			log.Info("adopted running dnsmasq", "pid", p.pid)
		} else if p != nil {
			log.Info("dnsmasq command line changed, restarting", "pid", p.pid)
			p.stop(inst.dir)
			d.stops.Add(1)
		}
	}
	if inst.proc != nil && inst.proc.alive(inst.dir) {
		argv, _ := cmdline(inst.proc.pid)
		if len(argv) > 0 && slices.Equal(argv[1:], inst.args) {
			if !filesChanged {
				return nil
			}
			d.reloads.Add(1)
			log.Info("reloading dnsmasq", "pid", inst.proc.pid)
			return inst.proc.hup(inst.dir)
		}
		inst.proc.stop(inst.dir)
		d.stops.Add(1)
	}
	p, err := start(d.cfg.Dnsmasq, inst.ns, inst.dir, inst.args)
	if err != nil {
		return err
	}
	inst.proc = p
	d.starts.Add(1)
	log.Info("started dnsmasq", "pid", p.pid)
	return nil
}

// writeFiles renders the files dnsmasq rereads on SIGHUP and reports whether
// any changed.
func (d *Driver) writeFiles(dir string, w served) (bool, error) {
	if err := d.as.shareDir(dir, 0o750); err != nil {
		return false, err
	}
	mtu := w.net.MTU
	if mtu == 0 {
		mtu = network.DefaultMTU
	}
	changed := false
	for name, content := range map[string]string{
		hostsFile: HostsFile(w.net, w.ports),
		addnHosts: AddnHosts(w.net, w.ports, d.cfg.Domain),
		optsFile:  OptsFile(w.net, mtu),
	} {
		c, err := d.as.writeIfChanged(filepath.Join(dir, name), content)
		if err != nil {
			return false, err
		}
		changed = changed || c
	}
	return changed, nil
}

// writeIfChanged writes content to path (through a rename, so dnsmasq
// never reads half a file) unless it holds it already, and leaves it
// readable by dnsmasq's group either way (a file an older agent wrote may
// be root's alone).
func (r runAs) writeIfChanged(path, content string) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && string(old) == content {
		f, err := os.Open(path)
		if err != nil {
			return false, err
		}
		defer f.Close()
		return false, r.shareFile(f)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return false, fmt.Errorf("write %q: %w", tmp, err)
	}
	_, err = f.WriteString(content)
	if err == nil {
		err = r.shareFile(f)
	}
	if err2 := f.Close(); err == nil {
		err = err2
	}
	if err != nil {
		return false, fmt.Errorf("write %q: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, fmt.Errorf("rename %q: %w", tmp, err)
	}
	return true, nil
}

// Supervise restarts any wanted dnsmasq that died or hangs (answers no
// DNS liveness probe HungAfter times in a row), checking every interval,
// until ctx is done.
func (d *Driver) Supervise(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.check()
		}
	}
}

// check restarts every wanted dnsmasq that died or hangs. Probes run
// without the driver's lock, so a hung dnsmasq never stalls a Set.
func (d *Driver) check() {
	type probe struct {
		inst *instance
		proc *process
		ns   string
		addr netip.Addr
		err  error
	}
	var probes []probe
	d.mu.Lock()
	for _, inst := range d.runs {
		if inst.proc == nil {
			continue
		}
		if !inst.proc.alive(inst.dir) {
			d.restart(inst, "exited")
			continue
		}
		probes = append(probes, probe{inst: inst, proc: inst.proc, ns: inst.ns, addr: inst.probeAddr})
	}
	d.mu.Unlock()
	for i := range probes {
		p := &probes[i]
		if !p.addr.IsValid() {
			p.err = errNoProbeAddr
			continue
		}
		p.err = probeDNS(p.ns, p.addr, d.cfg.Domain, ProbeTimeout)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range probes {
		if d.runs[p.inst.netID] != p.inst || p.inst.proc != p.proc || errors.Is(p.err, errNoProbeAddr) {
			continue // changed meanwhile, or nothing to probe
		}
		if p.err == nil {
			p.inst.failures = 0
			continue
		}
		p.inst.failures++
		d.log.Warn("dnsmasq liveness probe failed", "network", p.inst.netID, "pid", p.proc.pid, "failures", p.inst.failures, "err", p.err)
		if p.inst.failures >= HungAfter {
			d.restart(p.inst, fmt.Sprintf("hung: no DNS answer to %d probes", p.inst.failures))
		}
	}
}

// restart kills what is left of inst's dnsmasq and starts a new one
// (called with d.mu held).
func (d *Driver) restart(inst *instance, reason string) {
	d.log.Warn("dnsmasq "+reason+", restarting", "network", inst.netID, "pid", inst.proc.pid)
	hung := inst.proc.alive(inst.dir)
	if hung {
		// SIGKILL: a stopped or wedged process does not act on SIGTERM.
		// Then wait until it has closed its sockets: the new one binds
		// the same addresses.
		_ = syscall.Kill(inst.proc.pid, syscall.SIGKILL)
		inst.proc.waitGone()
		inst.proc.stop(inst.dir)
	}
	inst.failures = 0
	inst.restarts++
	inst.lastRestart, inst.lastReason = time.Now().UTC(), reason
	if d.cfg.Restarted != nil {
		defer d.cfg.Restarted()
	}
	p, err := start(d.cfg.Dnsmasq, inst.ns, inst.dir, inst.args)
	if err != nil {
		d.log.Error("restart dnsmasq", "network", inst.netID, "err", err)
		return
	}
	d.log.Info("dnsmasq restarted", "network", inst.netID, "pid", p.pid, "reason", reason)
	inst.proc = p
	d.restarts.Add(1)
	if hung {
		d.hung.Add(1)
	}
}

// Processes reports each supervised dnsmasq for the host status.
func (d *Driver) Processes() []api.SupervisedProcess {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []api.SupervisedProcess{}
	for _, inst := range d.runs {
		sp := api.SupervisedProcess{Name: "dnsmasq network " + inst.netID, Restarts: inst.restarts,
			LastRestart: inst.lastRestart, LastReason: inst.lastReason, ProbeFailures: inst.failures}
		if inst.proc != nil && inst.proc.alive(inst.dir) {
			sp.PID = inst.proc.pid
		}
		out = append(out, sp)
	}
	slices.SortFunc(out, func(a, b api.SupervisedProcess) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// probeAddr is where the DNS liveness probe goes: the DHCP port's first
// IPv4 address, else its first address.
func probeAddr(p network.Port) netip.Addr {
	for _, a := range p.IPs {
		if a.Is4() {
			return a
		}
	}
	if len(p.IPs) > 0 {
		return p.IPs[0]
	}
	return netip.Addr{}
}
