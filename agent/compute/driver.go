// Package compute is the agent's libvirt driver: it turns the wanted
// instances of a host into libvirt domains (virtio disk and NICs on the
// networks' bridges, a serial console logged to a file, a cloud-init
// NoCloud seed ISO), keeps their power state in sync both ways, and reports
// what it sees. Domains that are not Strata's are never touched.
package compute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/strata-infra/strata/agent/hostinfo"
	"github.com/strata-infra/strata/pkg/computespec"
)

// Driver is the libvirt implementation of Compute.
type Driver struct {
	cfg      Config
	hv       Hypervisor
	log      *slog.Logger
	domType  string
	reason   string
	capacity computespec.Capacity
	ratios   computespec.Ratios

	setMu sync.Mutex // one Set at a time

	mu        sync.Mutex // guards what follows
	desired   map[string]Instance
	errs      map[string]string
	insts     map[string]InstanceStatus
	connected bool
	// disconnects counts working connections lost (a metric).
	disconnects uint64
	lastSweep   time.Time
	obs         chan struct{}
	// early counts live migrations refused because the destination had
	// not prepared yet, by instance ID.
	early map[string]int
}

var _ Compute = (*Driver)(nil)

// New checks cfg, detects the domain type and measures the host. It starts
// no goroutine and does not dial libvirtd; Run does.
func New(cfg Config) (*Driver, error) {
	if cfg.Hypervisor == nil {
		return nil, errors.New("compute: no hypervisor")
	}
	if cfg.StateDir == "" {
		return nil, errors.New("compute: state dir is empty")
	}
	if cfg.DomainPrefix == "" {
		cfg.DomainPrefix = DefaultDomainPrefix
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 60 * time.Second
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("compute: state dir: %w", err)
	}
	d := &Driver{
		cfg: cfg, hv: cfg.Hypervisor, log: log.With("subsystem", "compute"),
		desired: map[string]Instance{}, errs: map[string]string{}, insts: map[string]InstanceStatus{},
		obs: make(chan struct{}, 1),
	}
	switch cfg.DomainType {
	case "":
		t, err := DetectDomainType("/dev/kvm", 2*time.Second)
		d.domType = t
		if err != nil {
			d.reason = err.Error()
		}
	case DomainKVM, DomainQEMU:
		d.domType, d.reason = cfg.DomainType, "set in config"
	default:
		return nil, fmt.Errorf("compute: domain type %q is neither kvm nor qemu", cfg.DomainType)
	}
	c := cfg.Capacity
	if c == (computespec.Capacity{}) {
		var err error
		// The same measure gossip announces (the reservations are taken
		// off below).
		if c, err = hostinfo.Capacity(cfg.StateDir, computespec.Capacity{}); err != nil {
			return nil, fmt.Errorf("compute: host capacity: %w", err)
		}
	}
	d.capacity = c.Sub(cfg.Reserved)
	d.ratios = cfg.Ratios.Or(computespec.DefaultRatios())
	return d, nil
}

// Run follows libvirt's lifecycle events and sweeps the host every
// SweepInterval until ctx ends, reconnecting to libvirtd whenever it
// restarts. It never starts or stops a domain by itself: a domain that
// stopped behind Strata's back is reported as stopped (nova's power-state
// sync); the coordinator decides what is wanted next.
func (d *Driver) Run(ctx context.Context) {
	events := d.hv.Events(ctx)
	tick := time.NewTicker(d.cfg.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case name, ok := <-events:
			if !ok {
				return
			}
			if _, mine := InstanceID(d.cfg.DomainPrefix, name); name != "" && !mine {
				continue
			}
		case <-tick.C:
		}
		d.sweep(ctx)
	}
}

// Observe returns the channel that receives a value after Status changed.
func (d *Driver) Observe() <-chan struct{} { return d.obs }

// Close closes the hypervisor connection; domains keep running.
func (d *Driver) Close() error { return d.hv.Close() }

// Status returns the last observed state.
func (d *Driver) Status() HostStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := HostStatus{
		Connected: d.connected, DomainType: d.domType, DomainTypeReason: d.reason,
		Capacity: d.capacity, LastSweep: d.lastSweep,
	}
	for _, in := range d.desired {
		if d.errs[in.Spec.ID] == "" {
			st.Used = st.Used.Add(in.Flavor)
		}
	}
	for _, s := range d.insts {
		s.ConsoleLog = tail(filesOf(d.cfg.StateDir, s.ID).Console, ConsoleTail)
		st.Instances = append(st.Instances, s)
	}
	sort.Slice(st.Instances, func(i, j int) bool { return st.Instances[i].ID < st.Instances[j].ID })
	return st
}

func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		f.Seek(st.Size()-n, 0)
	}
	b := make([]byte, n)
	k, _ := f.Read(b)
	return string(b[:k])
}

// owned returns Strata's domains by instance ID: the name has the prefix
// and the metadata names the same instance.
func (d *Driver) owned(doms []Domain) map[string]Domain {
	out := map[string]Domain{}
	for _, dom := range doms {
		id, ok := InstanceID(d.cfg.DomainPrefix, dom.Name)
		if m, isOurs := parseMeta(dom.Metadata); ok && isOurs && m.ID == id {
			out[id] = dom
		}
	}
	return out
}

// sweep re-reads the host and updates the status; it changes nothing.
func (d *Driver) sweep(ctx context.Context) {
	doms, err := d.hv.Domains(ctx)
	d.record(doms, err)
}

// record updates the status from a listing (or its failure) and notifies
// observers when anything changed.
func (d *Driver) record(doms []Domain, listErr error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	changed := d.connected != (listErr == nil)
	if changed && listErr != nil {
		d.disconnects++
	}
	d.connected = listErr == nil
	if listErr != nil {
		if changed {
			d.log.Warn("libvirtd unreachable", "err", listErr)
			d.notify()
		}
		return
	}
	now := time.Now()
	d.lastSweep = now
	owned := d.owned(doms)
	next := map[string]InstanceStatus{}
	add := func(id string, p computespec.PowerState) {
		s := InstanceStatus{ID: id, Domain: DomainName(d.cfg.DomainPrefix, id), Power: p, DomainType: d.domType, Error: d.errs[id]}
		old, had := d.insts[id]
		s.Changed = old.Changed
		if !had || old.Power != s.Power || old.Error != s.Error {
			s.Changed, changed = now, true
			if had && old.Power != s.Power {
				d.log.Info("instance power changed", "instance", id, "from", old.Power, "to", s.Power)
			}
		}
		next[id] = s
	}
	for id, dom := range owned {
		add(id, dom.State)
	}
	for id := range d.desired {
		if _, ok := owned[id]; !ok {
			add(id, computespec.PowerMissing)
		}
	}
	if len(next) != len(d.insts) {
		changed = true
	}
	d.insts = next
	if changed {
		d.notify()
	}
}

func (d *Driver) notify() {
	select {
	case d.obs <- struct{}{}:
	default:
	}
}

// Config returns the driver's configuration with defaults filled in.
func (d *Driver) Config() Config { return d.cfg }
