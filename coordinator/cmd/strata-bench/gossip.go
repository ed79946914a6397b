package main

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	metrics "github.com/hashicorp/go-metrics"

	"github.com/strata-infra/strata/pkg/gossip"
)

// byteSink counts the bytes memberlist reports sending (its
// memberlist.udp.sent and memberlist.tcp.sent counters).
type byteSink struct {
	metrics.BlackholeSink
	sent atomic.Uint64
}

func (s *byteSink) IncrCounterWithLabels(key []string, val float32, _ []metrics.Label) {
	if len(key) >= 2 && key[len(key)-1] == "sent" && (key[len(key)-2] == "udp" || key[len(key)-2] == "tcp") {
		s.sent.Add(uint64(val))
	}
}

// gossipBench measures the pool with real memberlist members on loopback,
// production (LAN) timings: how long a meta change takes to reach every
// member of 100, and at 100, 500 and 1,000 members the CPU and bytes each
// member spends per second while every member's applied epoch changes at
// 10 commits/s. Each load run lasts window; a pool that does not form
// within a bound is reported and skipped.
func gossipBench(sizes []int, window, budget time.Duration) error {
	began := time.Now()
	sink := &byteSink{}
	cfg := metrics.DefaultConfig("")
	cfg.EnableRuntimeMetrics, cfg.EnableHostname = false, false
	if _, err := metrics.NewGlobal(cfg, sink); err != nil {
		return err
	}
	t0 := time.Now()
	pn := propagationPool
	propLine := ""
	pool, err := startPool(pn)
	if err != nil {
		fmt.Printf("BENCH gossip_%d_members skipped: %v\n", pn, err)
		propLine = fmt.Sprintf("meta change to all %d members: skipped: %v", pn, err)
	} else {
		bench(fmt.Sprintf("gossip_%d_members_pool_formed_in", pn), time.Since(t0).Seconds(), "s")
		bench(fmt.Sprintf("gossip_%d_members_alive_at_start", pn), float64(aliveIn(pool[0])), "members")
		prop, err := propagation(pool, 3)
		if err != nil {
			stopPool(pool)
			return err
		}
		mid := prop[len(prop)/2]
		bench(fmt.Sprintf("gossip_meta_to_half_of_%d_members_median", pn), mid.half.Seconds()*1000, "ms")
		bench(fmt.Sprintf("gossip_meta_to_all_%d_members_median", pn), mid.all.Seconds()*1000, "ms")
		bench(fmt.Sprintf("gossip_meta_to_all_%d_members_max", pn), prop[len(prop)-1].all.Seconds()*1000, "ms")
		bench(fmt.Sprintf("gossip_meta_%d_members_reached_median", pn), mid.reached, "fraction")
		propLine = fmt.Sprintf("meta change to all %d members: median %.0f ms, max %.0f ms (half of them: %.0f ms), %.0f%% reached",
			pn, mid.all.Seconds()*1000, prop[len(prop)-1].all.Seconds()*1000, mid.half.Seconds()*1000, mid.reached*100)
	}
	stopPool(pool)
	var rows []string
	for _, n := range sizes {
		if time.Since(began) > budget {
			fmt.Printf("BENCH gossip_%d_members skipped: the gossip runs' budget of %v is spent\n", n, budget)
			rows = append(rows, fmt.Sprintf("%7d  skipped: budget of %v spent", n, budget))
			continue
		}
		t0 := time.Now()
		pool, err := startPool(n)
		if err != nil {
			fmt.Printf("BENCH gossip_%d_members skipped: %v\n", n, err)
			stopPool(pool)
			rows = append(rows, fmt.Sprintf("%7d  skipped: %v", n, err))
			continue
		}
		formed := time.Since(t0)
		bench(fmt.Sprintf("gossip_%d_members_pool_formed_in", n), formed.Seconds(), "s")
		bench(fmt.Sprintf("gossip_%d_members_alive_at_start", n), float64(aliveIn(pool[0])), "members")
		cpu, bytes, skipped := epochLoad(pool, sink, window)
		alive := aliveIn(pool[0])
		bench(fmt.Sprintf("gossip_%d_members_alive_at_end", n), float64(alive), "members")
		stopPool(pool)
		bench(fmt.Sprintf("gossip_%d_members_cpu_per_member", n), cpu*1000, "ms_cpu/s")
		bench(fmt.Sprintf("gossip_%d_members_bytes_per_member", n), bytes, "bytes/s")
		bench(fmt.Sprintf("gossip_%d_members_meta_updates_late", n), skipped, "fraction")
		rows = append(rows, fmt.Sprintf("%7d  %9.1f  %5d/%-5d  %12.2f  %12.0f  %10.0f%%",
			n, formed.Seconds(), alive, n, cpu*1000, bytes, skipped*100))
	}
	fmt.Printf("\ngossip, memberlist on loopback (encrypted, LAN timings), every member's applied epoch at 10 commits/s for %v:\n", window)
	fmt.Println(propLine)
	fmt.Println("members  formed(s)  alive(end)   CPU ms/s/mbr  bytes/s/mbr  updates late")
	for _, r := range rows {
		fmt.Println(r)
	}
	fmt.Println()
	return nil
}

// propagationPool is the pool size of the propagation figure.
var propagationPool = 100

// freeLoopbackPort finds a port free for both TCP and UDP on 127.0.0.1.
func freeLoopbackPort() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free loopback port for gossip")
}

// startPool starts n agents on loopback and joins them into one pool,
// and waits (bounded) until the first and the last member know them all.
// The first eight join the first member one by one; the rest join one of
// those eight seeds at random, four joins at a time (as a fleet of
// agents, each listing a few seeds, comes up), so no one member answers
// every join's state exchange and no join waits for all the others.
func startPool(n int) ([]*gossip.Member, error) {
	quiet := slog.New(slog.DiscardHandler)
	key, err := gossip.GenerateKey() // encrypted, as production pools are
	if err != nil {
		return nil, err
	}
	bound := time.Duration(n)*100*time.Millisecond + 30*time.Second
	deadline := time.Now().Add(bound)
	pool := make([]*gossip.Member, 0, n)
	addrs := make([]string, 0, n)
	for i := range n {
		port, err := freeLoopbackPort()
		if err != nil {
			return pool, err
		}
		m, err := gossip.New(gossip.Config{Name: fmt.Sprintf("bench-%04d", i), BindAddr: "127.0.0.1", BindPort: port,
			Profile: gossip.ProfileLAN, Logger: quiet, Key: key,
			Meta: gossip.Meta{Role: gossip.RoleAgent, Zone: "az1", VCPUs: 64, RAMMiB: 512 << 10, DiskGiB: 10 << 10, AppliedEpoch: 1}})
		if err != nil {
			return pool, err
		}
		pool = append(pool, m)
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", port))
	}
	seeds := min(8, n)
	for i := 1; i < seeds; i++ {
		if _, err := pool[i].Join(addrs[:1]); err != nil {
			return pool, fmt.Errorf("seed %d: join: %w", i, err)
		}
	}
	var joined atomic.Int64
	var failed atomic.Value
	next := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := joinAny(pool[i], addrs[:seeds], deadline); err != nil {
					failed.Store(fmt.Errorf("member %d: %w", i, err))
					continue
				}
				joined.Add(1)
			}
		}()
	}
	for i := seeds; i < n && time.Now().Before(deadline); i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		return pool, err
	}
	if got := int(joined.Load()) + seeds; got < n {
		return pool, fmt.Errorf("only %d of %d members joined within %v", got, n, bound)
	}
	// Formed when the first and the last member know everyone. On a
	// loaded machine probes time out and some members go suspect or even
	// dead for a while (they refute and return); the figures say how many.
	for time.Now().Before(deadline) {
		if known(pool[0]) == n && known(pool[n-1]) == n {
			return pool, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(pool[0].Peers()) == n {
		return pool, nil // all joined; some are not alive in the first's view
	}
	return pool, fmt.Errorf("pool of %d did not form within %v (first member knows %d)", n, bound, len(pool[0].Peers()))
}

// joinAny joins m through one of seeds picked at random, trying another
// when a join fails (on a busy machine a seed's state exchange times
// out), until deadline.
func joinAny(m *gossip.Member, seeds []string, deadline time.Time) error {
	var err error
	for tries := 0; tries == 0 || time.Now().Before(deadline); tries++ {
		if _, err = m.Join([]string{seeds[rand.IntN(len(seeds))]}); err == nil {
			return nil
		}
	}
	return fmt.Errorf("join: %w", err)
}

// aliveIn counts the members alive in m's view.
func aliveIn(m *gossip.Member) int {
	c := 0
	for _, p := range m.Peers() {
		if p.State == gossip.StateAlive {
			c++
		}
	}
	return c
}

func known(m *gossip.Member) int {
	c := 0
	for _, p := range m.Peers() {
		if p.State == gossip.StateAlive || p.State == gossip.StateSuspect {
			c++
		}
	}
	return c
}

func stopPool(pool []*gossip.Member) {
	var wg sync.WaitGroup
	for _, m := range pool {
		wg.Add(1)
		go func() { defer wg.Done(); _ = m.Shutdown() }()
	}
	wg.Wait()
}

// propagation changes the first member's meta rounds times; for each it
// records how long the change took to reach half of the other members
// and all of them (those the first sees alive), bounded by 20 s.
type spread struct {
	half, all time.Duration
	reached   float64 // fraction of the others reached within the bound
}

func propagation(pool []*gossip.Member, rounds int) ([]spread, error) {
	var out []spread
	name := pool[0].Name()
	for r := range rounds {
		epoch := uint64(1000 + r)
		start := time.Now()
		// An error here is a first broadcast slower than 5 s on a loaded
		// machine; the change is in force and queued, so keep measuring.
		_ = pool[0].UpdateMeta(func(m *gossip.Meta) { m.AppliedEpoch = epoch })
		pending := slices.DeleteFunc(slices.Clone(pool[1:]), func(m *gossip.Member) bool { return !aliveTo(pool[0], m.Name()) })
		total := len(pending)
		sp := spread{}
		for len(pending) > 0 && time.Since(start) < 20*time.Second {
			pending = slices.DeleteFunc(pending, func(m *gossip.Member) bool { return seesEpoch(m, name, epoch) })
			if sp.half == 0 && len(pending) <= total/2 {
				sp.half = time.Since(start)
			}
			time.Sleep(2 * time.Millisecond)
		}
		sp.all = time.Since(start)
		sp.reached = float64(total-len(pending)) / float64(max(total, 1))
		out = append(out, sp)
	}
	slices.SortFunc(out, func(a, b spread) int { return int(a.all - b.all) })
	return out, nil
}

func aliveTo(m *gossip.Member, name string) bool {
	for _, p := range m.Peers() {
		if p.Name == name {
			return p.State == gossip.StateAlive
		}
	}
	return false
}

func seesEpoch(m *gossip.Member, name string, epoch uint64) bool {
	for _, p := range m.Peers() {
		if p.Name == name {
			return p.Meta.AppliedEpoch >= epoch
		}
	}
	return false
}

// epochLoad bumps every member's applied epoch 10 times a second for
// window and returns the CPU seconds and bytes sent per member per second,
// and the fraction of updates skipped because the member's previous one
// was still waiting for its first broadcast.
func epochLoad(pool []*gossip.Member, sink *byteSink, window time.Duration) (float64, float64, float64) {
	busy := make([]atomic.Bool, len(pool))
	var skipped, sent atomic.Uint64
	var wg sync.WaitGroup
	cpu0, bytes0, start := cpuSeconds(), sink.sent.Load(), time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	epoch := uint64(10)
	for time.Since(start) < window {
		<-tick.C
		epoch++
		for i, m := range pool {
			if !busy[i].CompareAndSwap(false, true) {
				skipped.Add(1)
				continue
			}
			sent.Add(1)
			wg.Add(1)
			go func(e uint64) {
				defer wg.Done()
				defer busy[i].Store(false)
				_ = m.UpdateMeta(func(meta *gossip.Meta) { meta.AppliedEpoch = e })
			}(epoch)
		}
	}
	tick.Stop()
	elapsed := time.Since(start).Seconds()
	cpu, bytes := cpuSeconds()-cpu0, float64(sink.sent.Load()-bytes0)
	wg.Wait()
	n := float64(len(pool))
	total := float64(skipped.Load() + sent.Load())
	return cpu / elapsed / n, bytes / elapsed / n, float64(skipped.Load()) / max(total, 1)
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
