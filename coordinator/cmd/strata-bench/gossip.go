package main

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	metrics "github.com/hashicorp/go-metrics"
	"github.com/hashicorp/memberlist"

	"github.com/strata-infra/strata/coordinator/membership"
	"github.com/strata-infra/strata/coordinator/scheduler"
	"github.com/strata-infra/strata/pkg/computespec"
	"github.com/strata-infra/strata/pkg/gossip"
)

// poolSink counts what memberlist reports through go-metrics: the bytes
// it sends (memberlist.udp.sent and memberlist.tcp.sent), the suspicions
// members start or learn (memberlist.msg.suspect: one per member that
// marks a node suspect) and the deaths they record (memberlist.msg.dead).
type poolSink struct {
	metrics.BlackholeSink
	sent, suspect, dead atomic.Uint64
}

func (s *poolSink) IncrCounterWithLabels(key []string, val float32, _ []metrics.Label) {
	if len(key) != 3 || key[0] != "memberlist" {
		return
	}
	switch {
	case key[2] == "sent" && (key[1] == "udp" || key[1] == "tcp"):
		s.sent.Add(uint64(val))
	case key[1] == "msg" && key[2] == "suspect":
		s.suspect.Add(1)
	case key[1] == "msg" && key[2] == "dead":
		s.dead.Add(1)
	}
}

// poolKind says how a bench pool runs.
type poolKind struct {
	// inproc runs the members over memNet instead of loopback UDP/TCP.
	inproc bool
	// stretch multiplies every memberlist timer of the LAN profile
	// (probe, gossip, push/pull, TCP timeouts) and the commit rate's
	// period. A pool's protocol work per period is the same, so its
	// CPU and bytes per second at LAN timings are the measured ones times
	// stretch, and its spreading times the measured ones over stretch.
	// It lets one process on a few cores run a pool whose members would
	// together need more cores than the machine has at LAN timings.
	stretch float64
	// compress keeps memberlist's LZW compression of every message on
	// (the gossip profiles turn it off; see gossip.memberlistConfig).
	compress bool
}

func (k poolKind) name(n int) string {
	s := fmt.Sprintf("gossip_%d_members", n)
	if k.inproc {
		s = fmt.Sprintf("gossip_inproc_%d_members", n)
	}
	if k.compress {
		s += "_lzw"
	}
	return s
}

func (k poolKind) describe() string {
	if k.inproc {
		return fmt.Sprintf("in-process network, LAN timers x%g", k.stretch)
	}
	return "loopback UDP/TCP, LAN timers"
}

// tune stretches the LAN profile's timers and, for inproc, installs the
// in-process transport.
func (k poolKind) tune(nw *memNet) func(*memberlist.Config) {
	return func(c *memberlist.Config) {
		s := func(d time.Duration) time.Duration { return time.Duration(float64(d) * k.stretch) }
		c.ProbeInterval, c.ProbeTimeout = s(c.ProbeInterval), s(c.ProbeTimeout)
		c.GossipInterval, c.GossipToTheDeadTime = s(c.GossipInterval), s(c.GossipToTheDeadTime)
		c.PushPullInterval, c.TCPTimeout = s(c.PushPullInterval), s(c.TCPTimeout)
		if k.inproc {
			c.Transport = nw.transport()
		}
		if k.compress {
			c.EnableCompression = true
		}
	}
}

// stretchFor is the timer stretch of an in-process pool of n when the
// process gets cores of CPU: at LAN timings a member costs about 3-5 ms
// of CPU per second (more while probes fail), so the stretch keeps the
// pool at a quarter of what the process gets, rounded up to a whole
// factor.
func stretchFor(n int, cores float64) float64 {
	return max(1, math.Ceil(float64(n)*0.005/(cores/4)))
}

// cpuShare measures how many cores this process gets now: it spins on
// every P for a second and divides the CPU time it got by the wall time.
// On a shared machine this is what sets how large a pool can run.
func cpuShare() float64 {
	cpu0, t0 := cpuSeconds(), time.Now()
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := 0
			for time.Since(t0) < time.Second {
				for i := range 10000 {
					x += i
				}
			}
			_ = x
		}()
	}
	wg.Wait()
	return (cpuSeconds() - cpu0) / time.Since(t0).Seconds()
}

// gossipBench measures pools of real memberlist members, encrypted, LAN
// timings: how long a meta change takes to reach every member, and the
// CPU and bytes each member spends per second, and the suspicions and
// deaths they record, while every member's applied epoch changes at 10
// commits/s. udpSizes run over loopback UDP/TCP in real time; inprocSizes
// over an in-process network with stretched timers (see poolKind). A pool
// that does not form within a bound is reported and skipped; no new size
// starts after budget.
func gossipBench(udpSizes, inprocSizes []int, window, budget time.Duration) error {
	began := time.Now()
	sink := &poolSink{}
	cfg := metrics.DefaultConfig("")
	cfg.EnableRuntimeMetrics, cfg.EnableHostname = false, false
	if _, err := metrics.NewGlobal(cfg, sink); err != nil {
		return err
	}
	var rows []string
	run := func(n int, kind poolKind) {
		if time.Since(began) > budget {
			fmt.Printf("BENCH %s skipped: the gossip runs' budget of %v is spent\n", kind.name(n), budget)
			rows = append(rows, fmt.Sprintf("%-9s %6d  skipped: budget of %v spent", where(kind), n, budget))
			return
		}
		row, err := poolRun(n, kind, sink, window)
		if err != nil {
			fmt.Printf("BENCH %s skipped: %v\n", kind.name(n), err)
			row = fmt.Sprintf("%-9s %6d  skipped: %v", where(kind), n, err)
		}
		rows = append(rows, row)
	}
	for _, n := range udpSizes {
		run(n, poolKind{stretch: 1})
	}
	if len(inprocSizes) > 0 && os.Getenv("STRATA_BENCH_GOSSIP_LZW") != "0" {
		// The baseline of the compression figure: memberlist's default
		// (LZW on every message) against the profiles' (off), at 100
		// members; the 100-member pool without it follows when asked for.
		cores := cpuShare()
		bench("gossip_process_cpu_share", cores, "cores")
		run(100, poolKind{inproc: true, stretch: stretchFor(100, cores), compress: true})
	}
	for _, n := range inprocSizes {
		cores := cpuShare()
		bench("gossip_process_cpu_share", cores, "cores")
		run(n, poolKind{inproc: true, stretch: stretchFor(n, cores)})
	}
	fmt.Printf("\ngossip, memberlist (encrypted, LAN profile), every member's applied epoch at 10 commits/s for %v;\n", window)
	fmt.Println("udp: real sockets on loopback, real time; inproc: in-process network, timers stretched by the factor shown,")
	fmt.Println("figures converted back to LAN timings (spread / stretch, CPU and bytes x stretch); formed is wall time.")
	fmt.Println("where      members stretch formed(s) meta-to-all(ms) med/max  CPU ms/s/mbr bytes/s/mbr  suspicions/mbr/min dead alive(end) dropped")
	for _, r := range rows {
		fmt.Println(r)
	}
	fmt.Println()
	return nil
}

func where(k poolKind) string {
	w := "udp"
	if k.inproc {
		w = "inproc"
	}
	if k.compress {
		w += "+lzw"
	}
	return w
}

// poolRun forms one pool of n, measures the spread of a meta change and
// the load, and returns the table row.
func poolRun(n int, kind poolKind, sink *poolSink, window time.Duration) (string, error) {
	name := kind.name(n)
	nw := newMemNet()
	t0 := time.Now()
	pool, err := startPool(n, kind, nw)
	defer stopPool(pool)
	if err != nil {
		return "", err
	}
	formed := time.Since(t0)
	bench(name+"_stretch", kind.stretch, "x")
	bench(name+"_pool_formed_in", formed.Seconds(), "s_wall")
	bench(name+"_alive_at_start", float64(aliveIn(pool[0])), "members")
	// The scheduler fed by this pool: the first member's view of the
	// others' meta, through the coordinator's membership mapping.
	view := membership.SchedulerHosts(membership.View{Peers: pool[0]}.Hosts())
	rate, _, p99 := placeOn(view, true, 2000, scheduler.DefaultConfig().Sample)
	bench(name+"_sched_hosts_from_pool", float64(len(view)), "hosts")
	bench(name+"_sched_anti_affinity_placements", rate, "placements/s")
	bench(name+"_sched_anti_affinity_p99", p99.Seconds()*1e6, "us")
	prop := propagation(pool, 3, time.Duration(20*kind.stretch)*time.Second)
	lan := func(d time.Duration) float64 { return d.Seconds() * 1000 / kind.stretch }
	mid := prop[len(prop)/2]
	bench(name+"_meta_to_half_median", lan(mid.half), "ms")
	bench(name+"_meta_to_all_median", lan(mid.all), "ms")
	bench(name+"_meta_to_all_max", lan(prop[len(prop)-1].all), "ms")
	bench(name+"_meta_reached_median", mid.reached, "fraction")
	ld := epochLoad(pool, sink, time.Duration(float64(window)*kind.stretch), kind.stretch)
	alive := aliveIn(pool[0])
	bench(name+"_alive_at_end", float64(alive), "members")
	bench(name+"_cpu_per_member", ld.cpu*1000*kind.stretch, "ms_cpu/s")
	bench(name+"_bytes_per_member", ld.bytes*kind.stretch, "bytes/s")
	bench(name+"_suspicions_per_member", ld.suspicions*60*kind.stretch, "per_min")
	bench(name+"_dead_declared", float64(ld.dead), "marks")
	bench(name+"_meta_updates_late", ld.late, "fraction")
	dropped := nw.dropped.Load()
	if kind.inproc {
		bench(name+"_packets_dropped", float64(dropped), "packets")
	}
	return fmt.Sprintf("%-9s %6d %7g %9.1f %9.0f/%-9.0f %12.2f %11.0f %19.2f %4d %5d/%-5d %7d",
		where(kind), n, kind.stretch, formed.Seconds(), lan(mid.all), lan(prop[len(prop)-1].all),
		ld.cpu*1000*kind.stretch, ld.bytes*kind.stretch, ld.suspicions*60*kind.stretch, ld.dead, alive, n, dropped), nil
}

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

// benchMeta is what a bench member announces: an agent's full meta, as
// large as a real host's.
func benchMeta(i int) gossip.Meta {
	return gossip.Meta{Role: gossip.RoleAgent, Zone: fmt.Sprintf("az%d", i%4), AppliedEpoch: 1,
		VTEP:  netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
		VCPUs: 64, RAMMiB: 512 << 10, DiskGiB: 10 << 10, Arch: "x86_64", Hypervisor: "kvm",
		Physnets: []string{"provider"}, Storage: []string{"rbd:volumes"}, Ratios: computespec.DefaultRatios()}
}

// startPool starts n agents and joins them into one pool in waves: wave
// w joins the members [2^w, 2^(w+1)), each through one member picked at
// random among those already joined, eight joins at a time. So no member
// answers every join's state exchange (with one seed, that member pushes
// its whole state to every joiner and its CPU sets the pace), and the
// exchanges are spread over the pool as it grows. It waits (bounded)
// until the first and the last member know them all.
func startPool(n int, kind poolKind, nw *memNet) ([]*gossip.Member, error) {
	quiet := slog.New(slog.DiscardHandler)
	key, err := gossip.GenerateKey() // encrypted, as production pools are
	if err != nil {
		return nil, err
	}
	bound := time.Duration(float64(time.Duration(n)*200*time.Millisecond+60*time.Second) * max(1, kind.stretch/4))
	deadline := time.Now().Add(bound)
	pool := make([]*gossip.Member, 0, n)
	addrs := make([]string, 0, n)
	for i := range n {
		port := 0
		if !kind.inproc {
			if port, err = freeLoopbackPort(); err != nil {
				return pool, err
			}
		}
		m, err := gossip.New(gossip.Config{Name: fmt.Sprintf("bench-%04d", i), BindAddr: "127.0.0.1", BindPort: port,
			Profile: gossip.ProfileLAN, Logger: quiet, Key: key, Meta: benchMeta(i), Tune: kind.tune(nw)})
		if err != nil {
			return pool, err
		}
		pool = append(pool, m)
		addrs = append(addrs, m.LocalAddr().String())
	}
	for lo := 1; lo < n; lo *= 2 {
		hi := min(2*lo, n)
		var failed atomic.Value
		next := make(chan int)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					if err := joinAny(pool[i], addrs[:lo], deadline); err != nil {
						failed.Store(fmt.Errorf("member %d of wave [%d,%d): %w", i, lo, hi, err))
					}
				}
			}()
		}
		for i := lo; i < hi; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		if err, ok := failed.Load().(error); ok {
			return pool, err
		}
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
	return pool, fmt.Errorf("pool of %d did not form within %v (first member knows %d, last %d)",
		n, bound, known(pool[0]), known(pool[n-1]))
}

// joinAny joins m through one of seeds picked at random, trying another
// when a join fails (on a busy machine a state exchange can time out),
// until deadline.
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

// spread is how long one meta change took to reach half of the other
// members and all of them (those the first sees alive), and the fraction
// reached within the bound.
type spread struct {
	half, all time.Duration
	reached   float64
}

// propagation changes the first member's meta rounds times and returns
// each change's spread, sorted by the time to reach all.
func propagation(pool []*gossip.Member, rounds int, bound time.Duration) []spread {
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
		for len(pending) > 0 && time.Since(start) < bound {
			pending = slices.DeleteFunc(pending, func(m *gossip.Member) bool { return seesEpoch(m, name, epoch) })
			if sp.half == 0 && len(pending) <= total/2 {
				sp.half = time.Since(start)
			}
			time.Sleep(5 * time.Millisecond)
		}
		sp.all = time.Since(start)
		sp.reached = float64(total-len(pending)) / float64(max(total, 1))
		out = append(out, sp)
	}
	slices.SortFunc(out, func(a, b spread) int { return int(a.all - b.all) })
	return out
}

// aliveTo and seesEpoch look up one peer (Member.Peer): polling every
// member's whole view would cost O(n^2) per poll and starve the pool
// being measured.
func aliveTo(m *gossip.Member, name string) bool {
	p, ok := m.Peer(name)
	return ok && p.State == gossip.StateAlive
}

func seesEpoch(m *gossip.Member, name string, epoch uint64) bool {
	p, ok := m.Peer(name)
	return ok && p.Meta.AppliedEpoch >= epoch
}

// load is what a pool spent per member per second during a load run:
// CPU seconds, bytes sent and suspicion marks; deaths recorded in all;
// and the fraction of epoch updates skipped because the member's
// previous one was still waiting for its first broadcast.
type load struct {
	cpu, bytes, suspicions, late float64
	dead                         uint64
}

// epochLoad bumps every member's applied epoch 10 times a second
// (stretched by stretch) for window.
func epochLoad(pool []*gossip.Member, sink *poolSink, window time.Duration, stretch float64) load {
	busy := make([]atomic.Bool, len(pool))
	var skipped, sent atomic.Uint64
	var wg sync.WaitGroup
	cpu0, bytes0, sus0, dead0, start := cpuSeconds(), sink.sent.Load(), sink.suspect.Load(), sink.dead.Load(), time.Now()
	tick := time.NewTicker(time.Duration(float64(100*time.Millisecond) * stretch))
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
	sus, dead := float64(sink.suspect.Load()-sus0), sink.dead.Load()-dead0
	wg.Wait()
	n := float64(len(pool))
	total := float64(skipped.Load() + sent.Load())
	return load{cpu: cpu / elapsed / n, bytes: bytes / elapsed / n, suspicions: sus / elapsed / n,
		late: float64(skipped.Load()) / max(total, 1), dead: dead}
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
