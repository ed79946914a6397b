package main

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"time"

	"github.com/strata-infra/strata/coordinator/membership"
	"github.com/strata-infra/strata/coordinator/scheduler"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/gossip"
)

// schedulerThroughput measures placements per second and their p50/p99
// latency on one core (GOMAXPROCS 1), with 1,000 and 10,000 simulated
// hosts, plain and with every instance in an anti-affinity group of 10.
// The hosts come through gossip meta: each announces its capacity,
// ratios and zone in a gossip.Meta, encoded and decoded as the pool
// carries it, and the coordinator's view (membership) turns the peers
// into the scheduler's hosts. (The gossip bench places through a live
// pool's view too; here the pool itself is left out, so 10,000 fit.) Each placement is claimed and
// then recorded, as a commit confirms it. The baseline, in the same
// process, ranks every feasible host (Sample 0, nova's full pass) instead
// of a bounded random sample.
func schedulerThroughput() {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	for _, hosts := range []int{1000, 10000} {
		for _, anti := range []bool{false, true} {
			kind := "plain"
			if anti {
				kind = "anti_affinity"
			}
			name := fmt.Sprintf("sched_%s_%d_hosts", kind, hosts)
			n := 20000
			rate, p50, p99 := placeRun(hosts, anti, n, scheduler.DefaultConfig().Sample)
			bench(name+"_placements", rate, "placements/s")
			bench(name+"_p50", p50.Seconds()*1e6, "us")
			bench(name+"_p99", p99.Seconds()*1e6, "us")
			baseRate, _, baseP99 := placeRun(hosts, anti, max(200, 2_000_000/hosts), 0)
			bench(name+"_full_scan_baseline", baseRate, "placements/s")
			bench(name+"_vs_full_scan", rate/baseRate, "ratio")
			bench(name+"_full_scan_p99", baseP99.Seconds()*1e6, "us")
		}
	}
}

// placeRun places n instances of 1 vCPU / 512 MiB / 10 GiB on hosts
// simulated hosts in 4 zones (big enough that none fills up) and returns
// the rate and latency percentiles.
func placeRun(hosts int, anti bool, n, sample int) (float64, time.Duration, time.Duration) {
	return placeOn(hostsFromMeta(hosts), anti, n, sample)
}

// hostsFromMeta builds the scheduler's hosts as the coordinator does from
// gossip: n agents' metas (benchMeta: 64 vCPUs, 512 GiB, 4 zones, ratios
// 16/1/1) encoded, decoded and mapped by membership; one in 50 is dead.
func hostsFromMeta(n int) []scheduler.Host {
	peers := make([]api.Host, n)
	for i := range peers {
		buf, err := benchMeta(i).Encode()
		if err != nil {
			fail(err)
		}
		meta, err := gossip.DecodeMeta(buf)
		if err != nil {
			fail(err)
		}
		st := gossip.StateAlive
		if i%50 == 0 {
			st = gossip.StateDead
		}
		peers[i] = membership.HostFromPeer(gossip.Peer{Name: fmt.Sprintf("host-%05d", i), State: st, Meta: meta,
			Addr: netip.AddrPortFrom(meta.VTEP, 7946)})
	}
	return membership.SchedulerHosts(peers)
}

// placeOn places n instances on the given hosts and returns the rate and
// latency percentiles.
func placeOn(batch []scheduler.Host, anti bool, n, sample int) (float64, time.Duration, time.Duration) {
	hosts := len(batch)
	cfg := scheduler.DefaultConfig()
	cfg.Sample = sample
	s := scheduler.New(cfg)
	s.SetHosts(batch)
	res := scheduler.Resources{VCPUs: 1, RAMMiB: 512, DiskGiB: 10}
	const groupSize = 10
	if anti {
		for g := 0; g < n/groupSize+1; g++ {
			s.SetGroup(fmt.Sprintf("p/g%d", g), scheduler.AntiAffinity)
		}
	}
	lat := make([]time.Duration, n)
	runtime.GC()
	start := time.Now()
	for i := range n {
		req := scheduler.Request{Instance: fmt.Sprintf("p/vm%d", i), Resources: res}
		if anti {
			req.Group = fmt.Sprintf("p/g%d", i/groupSize)
		}
		t0 := time.Now()
		c, err := s.Place(req)
		if err != nil {
			fail(fmt.Errorf("placement %d of %d on %d hosts: %w", i, n, hosts, err))
		}
		s.Record(req.Instance, c.Host, res, req.Group)
		lat[i] = time.Since(t0)
	}
	total := time.Since(start)
	slices.Sort(lat)
	return float64(n) / total.Seconds(), lat[n/2], lat[n*99/100]
}
