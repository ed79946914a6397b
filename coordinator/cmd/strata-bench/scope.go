package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-infra/strata/coordinator/planscope"
	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// scopeShape is the simulated cluster of the scoped fan-out: hosts, each
// with ports on two of the networks, spread over projects.
type scopeShape struct{ hosts, networks, projects, rounds int }

func scopeShapeFromEnv() (scopeShape, error) {
	sh := scopeShape{hosts: 10000, networks: 1000, projects: 10, rounds: 20}
	if v := os.Getenv("STRATA_BENCH_SCOPE_HOSTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			return sh, fmt.Errorf("STRATA_BENCH_SCOPE_HOSTS %q: want a count of 10 or more", v)
		}
		sh.hosts, sh.networks = n, max(n/10, 1)
	}
	return sh, nil
}

// fanoutDesign is how a coordinator wakes and answers its long-polls.
type fanoutDesign struct {
	name    string
	changed func(host string) <-chan struct{}
	epoch   func() uint64
	plan    func(host string, since uint64) (api.Plan, error)
	// wakes is how many hosts a change to a port of a network with the
	// given hosts must wake.
	wakes func(onNet []string) int
}

// scopedFanout measures one port change in a cluster of 10,000 simulated
// hosts on 1,000 networks, each host long-polling in process: how many
// hosts the change wakes, the coordinator CPU it costs (until every woken
// host is parked again), and the time until every host with a port on the
// changed network holds it. The baseline is the design before per-host
// plans (every commit wakes every long-poll, every host's plan holds
// every port), on the same cluster in the same process.
func scopedFanout(dir string) error {
	sh, err := scopeShapeFromEnv()
	if err != nil {
		return err
	}
	reg := registry.Default()
	open := func(name string) (*store.Store, map[int][]string, error) {
		st, err := store.Open(filepath.Join(dir, name), store.Options{NoSync: true})
		if err != nil {
			return nil, nil, err
		}
		onNet, err := populate(st, sh)
		return st, onNet, err
	}
	base, onNet, err := open("fanout-all.db")
	if err != nil {
		return err
	}
	defer base.Close()
	all := fanoutDesign{name: "all", changed: func(string) <-chan struct{} { return base.Changed() }, epoch: base.Epoch,
		plan:  func(h string, since uint64) (api.Plan, error) { return base.Plan(h, since, reg.PlanFilter(h)) },
		wakes: func([]string) int { return sh.hosts }}
	bAll, err := fanoutRun(base, all, sh, onNet)
	if err != nil {
		return err
	}
	scoped, _, err := open("fanout-scoped.db")
	if err != nil {
		return err
	}
	defer scoped.Close()
	sc, err := planscope.New(scoped, reg, 0)
	if err != nil {
		return err
	}
	one := fanoutDesign{name: "scoped", changed: sc.Changed, epoch: sc.Epoch, plan: func(h string, since uint64) (api.Plan, error) { return sc.Plan(h, since, false) },
		wakes: func(hosts []string) int { return len(hosts) }}
	bScoped, err := fanoutRun(scoped, one, sh, onNet)
	if err != nil {
		return err
	}
	tag := fmt.Sprintf("%dk_hosts", sh.hosts/1000)
	if sh.hosts < 1000 {
		tag = fmt.Sprintf("%d_hosts", sh.hosts)
	}
	bench("plan_scope_"+tag+"_woken_per_port_change", bScoped.woken, "hosts")
	bench("plan_scope_"+tag+"_woken_per_port_change_all_design", bAll.woken, "hosts")
	bench("plan_scope_"+tag+"_woken_ratio_vs_all", bScoped.woken/bAll.woken, "ratio")
	bench("plan_scope_"+tag+"_cpu_per_port_change", bScoped.cpu*1000, "ms")
	bench("plan_scope_"+tag+"_cpu_per_port_change_all_design", bAll.cpu*1000, "ms")
	bench("plan_scope_"+tag+"_cpu_ratio_vs_all", bScoped.cpu/bAll.cpu, "ratio")
	bench("plan_scope_"+tag+"_concerned_hosts_hold_change_median", ms(bScoped.latency), "ms")
	bench("plan_scope_"+tag+"_concerned_hosts_hold_change_median_all_design", ms(bAll.latency), "ms")
	bench("plan_scope_"+tag+"_latency_ratio_vs_all", float64(bScoped.latency)/float64(bAll.latency), "ratio")
	return nil
}

// populate writes sh's cluster in one commit: networks over the
// projects, and two ports per host on networks i and 7i+3. It returns,
// per network, the hosts with a port on it.
func populate(st *store.Store, sh scopeShape) (map[int][]string, error) {
	onNet := map[int][]string{}
	_, _, err := st.Update(func(tx *store.Tx) error {
		for p := 0; p < sh.projects; p++ {
			if _, _, err := tx.Put(api.Resource{Kind: "project", Name: fmt.Sprintf("p%d", p), Spec: json.RawMessage(`{}`)}); err != nil {
				return err
			}
		}
		for n := 0; n < sh.networks; n++ {
			spec, _ := json.Marshal(api.NetworkSpec{SegmentationID: uint32(1000 + n)})
			if _, _, err := tx.Put(api.Resource{Kind: "network", Project: netProject(n, sh), Name: netName(n), Spec: spec}); err != nil {
				return err
			}
		}
		for h := 0; h < sh.hosts; h++ {
			host := hostName(h)
			for i, n := range []int{h % sh.networks, (7*h + 3) % sh.networks} {
				if i == 1 && n == h%sh.networks {
					continue
				}
				spec, _ := json.Marshal(api.PortSpec{Network: netName(n), Host: host, MAC: fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", byte(h>>16), byte(h>>8), byte(h), i)})
				if _, _, err := tx.Put(api.Resource{Kind: "port", Project: netProject(n, sh), Name: fmt.Sprintf("%s-%d", host, i), Spec: spec}); err != nil {
					return err
				}
				onNet[n] = append(onNet[n], host)
			}
		}
		return nil
	})
	return onNet, err
}

func netName(n int) string                   { return fmt.Sprintf("net%04d", n) }
func netProject(n int, sh scopeShape) string { return fmt.Sprintf("p%d", n%sh.projects) }
func hostName(h int) string                  { return fmt.Sprintf("h%05d", h) }

type fanoutFigures struct {
	woken   float64       // hosts woken per change, mean
	cpu     float64       // process CPU seconds per change, mean
	latency time.Duration // commit to every concerned host holding it, median
}

// fanoutRun parks one long-poll per host as the API's plan handler does
// (wait while at the epoch; a host behind is answered at once), then
// changes one port per round and measures.
func fanoutRun(st *store.Store, d fanoutDesign, sh scopeShape, onNet map[int][]string) (fanoutFigures, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var parked, woken atomic.Int64
	held := make([]atomic.Uint64, sh.hosts)
	start := d.epoch()
	var wg sync.WaitGroup
	for h := 0; h < sh.hosts; h++ {
		held[h].Store(start)
		wg.Add(1)
		go func() {
			defer wg.Done()
			host, since := hostName(h), start
			for ctx.Err() == nil {
				ch := d.changed(host)
				if since == d.epoch() {
					parked.Add(1)
					select {
					case <-ch:
					case <-ctx.Done():
					}
					parked.Add(-1)
					woken.Add(1)
				}
				if ctx.Err() != nil {
					return
				}
				p, err := d.plan(host, since)
				if err != nil {
					return
				}
				since = p.Epoch
				held[h].Store(since)
			}
		}()
	}
	settled := func(what string) error {
		deadline := time.Now().Add(2 * time.Minute)
		for parked.Load() != int64(sh.hosts) {
			if time.Now().After(deadline) {
				return fmt.Errorf("%s design: %s: %d of %d hosts parked", d.name, what, parked.Load(), sh.hosts)
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	}
	if err := settled("start"); err != nil {
		return fanoutFigures{}, err
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	var lat []time.Duration
	var f fanoutFigures
	for r := 0; r < sh.rounds; r++ {
		n := rnd.IntN(sh.networks)
		hosts := onNet[n]
		if len(hosts) == 0 {
			continue
		}
		woken.Store(0)
		cpu0 := cpuSeconds()
		t0 := time.Now()
		epoch, _, err := st.Update(func(tx *store.Tx) error {
			k := api.Key{Kind: "port", Project: netProject(n, sh), Name: hosts[0] + "-0"}
			res, err := tx.Get(k)
			if err != nil {
				k.Name = hosts[0] + "-1"
				if res, err = tx.Get(k); err != nil {
					return err
				}
			}
			ps := decodePort(res)
			ps.DNSName = fmt.Sprintf("r%d", r)
			res.Spec, _ = json.Marshal(ps)
			_, _, err = tx.Put(res)
			return err
		})
		if err != nil {
			return f, err
		}
		deadline := time.Now().Add(2 * time.Minute)
		for _, host := range hosts {
			var h int
			fmt.Sscanf(host, "h%05d", &h)
			for held[h].Load() < epoch {
				if time.Now().After(deadline) {
					return f, fmt.Errorf("%s design: host %s never got epoch %d", d.name, host, epoch)
				}
				time.Sleep(200 * time.Microsecond)
			}
		}
		lat = append(lat, time.Since(t0))
		for woken.Load() < int64(d.wakes(hosts)) {
			if time.Now().After(deadline) {
				return f, fmt.Errorf("%s design: %d hosts woken, want %d", d.name, woken.Load(), d.wakes(hosts))
			}
			time.Sleep(200 * time.Microsecond)
		}
		if err := settled("after a change"); err != nil {
			return f, err
		}
		f.cpu += cpuSeconds() - cpu0
		f.woken += float64(woken.Load())
	}
	cancel()
	wg.Wait()
	f.cpu /= float64(len(lat))
	f.woken /= float64(len(lat))
	f.latency = pct(lat, 50)
	return f, nil
}

func decodePort(r api.Resource) api.PortSpec {
	var ps api.PortSpec
	_ = json.Unmarshal(r.Spec, &ps)
	return ps
}
