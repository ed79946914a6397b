// Package membership turns the coordinator's gossip view into host records:
// liveness (alive, suspect, dead, left) and capacity come from SWIM and the
// agents' node meta, never from polling hosts.
package membership

import (
	"context"
	"time"

	"github.com/strata-infra/strata/coordinator/scheduler"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/gossip"
)

// PeerSource is the part of gossip.Member used here.
type PeerSource interface {
	Peers() []gossip.Peer
}

// View adapts a gossip member to the API's HostSource.
type View struct{ Peers PeerSource }

// Hosts returns every agent the pool knows, dead ones included.
func (v View) Hosts() []api.Host {
	var out []api.Host
	for _, p := range v.Peers.Peers() {
		if p.MetaErr == nil && p.Meta.Role != gossip.RoleAgent {
			continue
		}
		out = append(out, HostFromPeer(p))
	}
	return out
}

// HostFromPeer maps one gossip peer to a host record.
func HostFromPeer(p gossip.Peer) api.Host {
	h := api.Host{
		Name:       p.Name,
		Addr:       p.Addr.String(),
		State:      string(p.State),
		StateSince: p.StateSince,
	}
	if p.MetaErr != nil {
		return h
	}
	m := p.Meta
	h.Zone, h.Aggregates, h.Drained = m.Zone, m.Aggregates, m.Drained
	if m.VTEP.IsValid() {
		h.VTEP = m.VTEP.String()
	}
	h.Capacity = api.Capacity{VCPUs: int(m.VCPUs), RAMMiB: int(m.RAMMiB), DiskGiB: int(m.DiskGiB)}
	h.AllocationRatios = m.Ratios
	h.AppliedEpoch = m.AppliedEpoch
	h.Arch, h.Physnets, h.Hypervisor, h.Storage = m.Arch, m.Physnets, m.Hypervisor, m.Storage
	return h
}

// SchedulerHosts maps the agents of the gossip view to the scheduler's
// hosts: alive from SWIM, drain, zone and capacity from their meta.
func SchedulerHosts(hosts []api.Host) []scheduler.Host {
	out := make([]scheduler.Host, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, scheduler.Host{Name: h.Name, Alive: h.State == api.StateAlive, Drained: h.Drained,
			Zone: h.Zone, Capacity: h.Capacity, Ratios: h.AllocationRatios, Arch: h.Arch, Hypervisor: h.Hypervisor,
			Physnets: h.Physnets, Storage: h.Storage, Aggregates: h.Aggregates})
	}
	return out
}

// FeedScheduler keeps sched's hosts current from the gossip pool until
// ctx ends: once now, then after membership or meta changes, at most
// every interval (meta changes with every applied epoch, and a sync
// compares every host).
func FeedScheduler(ctx context.Context, m Subscriber, sched *scheduler.State, interval time.Duration) {
	ch, cancel := m.Subscribe()
	defer cancel()
	v := View{Peers: m}
	for {
		sched.SetHosts(SchedulerHosts(v.Hosts()))
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// Subscriber is a peer source that signals changes (a gossip.Member).
type Subscriber interface {
	PeerSource
	Subscribe() (<-chan struct{}, func())
}
