package compute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/strata-infra/strata/pkg/computespec"
	"libvirt.org/go/libvirtxml"
)

// Libvirt is the Hypervisor over go-libvirt and libvirtd's local socket.
// go-libvirt does not reconnect; Libvirt redials on the next call after the
// connection dropped, and the Events loop redials with backoff on its own.
type Libvirt struct {
	socket string
	log    *slog.Logger
	mu     sync.Mutex
	l      *golibvirt.Libvirt // nil or dropped when not connected
	closed bool
}

var _ Hypervisor = (*Libvirt)(nil)

// NewLibvirt returns a Hypervisor for the libvirtd listening on socket
// (e.g. /run/libvirt/libvirt-sock). It dials on first use.
func NewLibvirt(socket string, log *slog.Logger) *Libvirt {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Libvirt{socket: socket, log: log.With("subsystem", "compute", "libvirtd", socket)}
}

// conn returns a live connection, dialling when there is none.
func (v *Libvirt) conn() (*golibvirt.Libvirt, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil, fmt.Errorf("libvirtd %q: %w: closed", v.socket, ErrDisconnected)
	}
	if v.l != nil && v.l.IsConnected() {
		return v.l, nil
	}
	l := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(v.socket), dialers.WithLocalTimeout(2*time.Second)))
	if err := l.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		v.l = nil
		return nil, fmt.Errorf("libvirtd %q: %w: %w", v.socket, ErrDisconnected, err)
	}
	v.l = l
	return l, nil
}

// Close disconnects; later calls fail.
func (v *Libvirt) Close() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.closed = true
	if v.l == nil || !v.l.IsConnected() {
		return nil
	}
	err := v.l.Disconnect()
	v.l = nil
	if err != nil {
		return fmt.Errorf("libvirtd %q: disconnect: %w", v.socket, err)
	}
	return nil
}

// Domains lists every domain with its state and Strata metadata.
func (v *Libvirt) Domains(ctx context.Context) ([]Domain, error) {
	l, err := v.conn()
	if err != nil {
		return nil, err
	}
	doms, _, err := l.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	out := make([]Domain, 0, len(doms))
	for _, d := range doms {
		st, _, err := l.DomainGetState(d, 0)
		if golibvirt.IsNotFound(err) {
			continue // gone since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("state of domain %q: %w", d.Name, err)
		}
		meta, err := l.DomainGetMetadata(d, int32(golibvirt.DomainMetadataElement), golibvirt.OptString{MetadataNS}, golibvirt.DomainAffectCurrent)
		if err != nil && !isCode(err, golibvirt.ErrNoDomainMetadata) && !golibvirt.IsNotFound(err) {
			return nil, fmt.Errorf("metadata of domain %q: %w", d.Name, err)
		}
		out = append(out, Domain{Name: d.Name, State: powerOf(golibvirt.DomainState(st)), Metadata: meta})
	}
	return out, nil
}

func powerOf(s golibvirt.DomainState) computespec.PowerState {
	switch s {
	case golibvirt.DomainRunning, golibvirt.DomainBlocked, golibvirt.DomainShutdown:
		return computespec.PowerRunning
	case golibvirt.DomainPaused, golibvirt.DomainPmsuspended:
		return computespec.PowerPaused
	case golibvirt.DomainShutoff:
		return computespec.PowerStopped
	case golibvirt.DomainCrashed:
		return computespec.PowerCrashed
	}
	return computespec.PowerUnknown
}

func isCode(err error, code golibvirt.ErrorNumber) bool {
	var e golibvirt.Error
	return errors.As(err, &e) && e.Code == uint32(code)
}

// Define defines or redefines a persistent domain.
func (v *Libvirt) Define(ctx context.Context, xml string) error {
	l, err := v.conn()
	if err != nil {
		return err
	}
	// A redefinition (a resize, a new port) must carry the domain's UUID,
	// else libvirtd refuses it as a second domain of the same name.
	var x libvirtxml.Domain
	if err := x.Unmarshal(xml); err == nil && x.UUID == "" {
		if dom, err := l.DomainLookupByName(x.Name); err == nil {
			u := dom.UUID
			x.UUID = fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
			if out, err := x.Marshal(); err == nil {
				xml = out
			}
		}
	}
	if _, err := l.DomainDefineXML(xml); err != nil {
		return fmt.Errorf("define domain: %w", err)
	}
	return nil
}

// Do performs a on the named domain.
func (v *Libvirt) Do(ctx context.Context, name string, a Action) error {
	l, err := v.conn()
	if err != nil {
		return err
	}
	d, err := l.DomainLookupByName(name)
	if golibvirt.IsNotFound(err) && (a == ActDestroy || a == ActUndefine) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s domain %q: %w", a, name, err)
	}
	switch a {
	case ActStart:
		err = l.DomainCreate(d)
	case ActShutdown:
		err = l.DomainShutdown(d)
	case ActDestroy:
		err = l.DomainDestroyFlags(d, golibvirt.DomainDestroyDefault)
		if isCode(err, golibvirt.ErrOperationInvalid) || golibvirt.IsNotFound(err) {
			err = nil // not running
		}
	case ActReset:
		err = l.DomainReset(d, 0)
	case ActUndefine:
		err = l.DomainUndefineFlags(d, golibvirt.DomainUndefineManagedSave|golibvirt.DomainUndefineSnapshotsMetadata|golibvirt.DomainUndefineNvram)
		if golibvirt.IsNotFound(err) {
			err = nil
		}
	default:
		err = fmt.Errorf("unknown action %d", a)
	}
	if err != nil {
		return fmt.Errorf("%s domain %q: %w", a, name, err)
	}
	return nil
}

// Events streams lifecycle events, reconnecting with backoff whenever
// libvirtd goes away, until ctx ends. It sends "" after every connection so
// that the caller re-reads the host.
func (v *Libvirt) Events(ctx context.Context) <-chan string {
	out := make(chan string, 64)
	go func() {
		defer close(out)
		backoff := 100 * time.Millisecond
		for ctx.Err() == nil {
			err := v.stream(ctx, out)
			if ctx.Err() != nil {
				return
			}
			v.log.Warn("libvirtd connection lost; reconnecting", "err", err, "backoff", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
			if err == nil {
				backoff = 100 * time.Millisecond
			}
		}
	}()
	return out
}

// stream runs one connection's event subscription until it drops.
func (v *Libvirt) stream(ctx context.Context, out chan<- string) error {
	l, err := v.conn()
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	evs, err := l.LifecycleEvents(sctx)
	if err != nil {
		return fmt.Errorf("subscribe to lifecycle events: %w", err)
	}
	v.log.Info("libvirtd connected")
	send(ctx, out, "")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.Disconnected():
			return nil
		case ev, ok := <-evs:
			if !ok {
				return errors.New("lifecycle event stream closed")
			}
			send(ctx, out, ev.Dom.Name)
		}
	}
}

func send(ctx context.Context, out chan<- string, s string) {
	select {
	case out <- s:
	case <-ctx.Done():
	}
}
