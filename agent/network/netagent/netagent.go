// Package netagent is the agent's network subsystem: it maps the plan and
// the gossip membership onto this host's HostState and converges the
// network drivers (linuxbridge, dhcp, endpoint) on it.
package netagent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/dhcp"
	"github.com/strata-infra/strata/agent/network/endpoint"
	"github.com/strata-infra/strata/agent/network/linuxbridge"
	"github.com/strata-infra/strata/agent/network/planmap"
	"github.com/strata-infra/strata/agent/network/provider"
	"github.com/strata-infra/strata/agent/network/router"
	"github.com/strata-infra/strata/agent/network/secgroup"
	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/gossip"
)

// Config configures the subsystem.
type Config struct {
	Self        planmap.Self
	NetNSPrefix string
	StateDir    string // the agent's; dnsmasq state goes below it
	DHCPDomain  string
	// PhysicalNetworks maps physical networks to host interfaces.
	PhysicalNetworks map[string]string
	Logger           *slog.Logger
	// Peers is the gossip view, read at every pass.
	Peers func() []gossip.Peer
}

// Reconciler converges the host's tenant networks.
type Reconciler struct {
	cfg     Config
	drivers network.Driver
	dhcp    *dhcp.Driver
	log     *slog.Logger
}

// New opens the drivers. It starts no goroutine; run Supervise for the
// dnsmasq supervisor.
func New(cfg Config) (*Reconciler, error) {
	log := cfg.Logger.With("subsystem", "network")
	lb, err := linuxbridge.New(linuxbridge.Config{Logger: log})
	if err != nil {
		return nil, err
	}
	d, err := dhcp.New(dhcp.Config{NSPrefix: cfg.NetNSPrefix, StateDir: filepath.Join(cfg.StateDir, "dhcp"), Domain: cfg.DHCPDomain, Logger: log})
	if err != nil {
		lb.Close()
		return nil, err
	}
	ep, err := endpoint.New(endpoint.Config{NSPrefix: cfg.NetNSPrefix, Logger: log})
	if err != nil {
		lb.Close()
		d.Close()
		return nil, err
	}
	pv, err := provider.New(provider.Config{Mappings: cfg.PhysicalNetworks, Logger: log})
	if err != nil {
		network.Multi{lb, d, ep}.Close()
		return nil, err
	}
	rt, err := router.New(router.Config{NSPrefix: cfg.NetNSPrefix + "r-", Logger: log})
	if err != nil {
		network.Multi{lb, d, ep, pv}.Close()
		return nil, err
	}
	sg, err := secgroup.New(secgroup.Config{Logger: log})
	if err != nil {
		network.Multi{lb, d, ep, pv, rt}.Close()
		return nil, err
	}
	// Bridges first: DHCP, endpoint and router legs plug into them; the
	// security group table last, once the ports it names exist.
	return &Reconciler{cfg: cfg, drivers: network.Multi{lb, pv, d, ep, rt, sg}, dhcp: d, log: log}, nil
}

// Name implements reconcile.Reconciler.
func (r *Reconciler) Name() string { return "network" }

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, s *plan.Snapshot) error {
	st, err := planmap.HostState(s, r.cfg.Self, RemoteVTEPs(r.cfg.Peers()))
	if err != nil {
		return err
	}
	if err := st.Validate(); err != nil {
		return fmt.Errorf("plan at epoch %d: %w", s.Epoch, err)
	}
	return r.drivers.Set(ctx, st)
}

// Supervise restarts dnsmasq processes that die, until ctx ends.
func (r *Reconciler) Supervise(ctx context.Context) { r.dhcp.Supervise(ctx, time.Second) }

// Close releases the drivers; the data plane stays as it is.
func (r *Reconciler) Close() error { return r.drivers.Close() }

// RemoteVTEPs maps the agents gossip holds for alive (or merely suspect)
// to their tunnel addresses. Suspect hosts keep their entries: SWIM has not
// ruled yet, and dropping them would flap traffic on a slow probe.
func RemoteVTEPs(peers []gossip.Peer) map[string]netip.Addr {
	out := map[string]netip.Addr{}
	for _, p := range peers {
		if p.MetaErr != nil || p.Meta.Role != gossip.RoleAgent || !p.Meta.VTEP.IsValid() {
			continue
		}
		if p.State == gossip.StateAlive || p.State == gossip.StateSuspect {
			out[p.Name] = p.Meta.VTEP
		}
	}
	return out
}
