package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

// Chaos test bounds. The duration comes from STRATA_CHAOS_DURATION.
const (
	chaosDefaultDuration = 2 * time.Minute
	chaosWriters         = 3
	chaosHealBound       = 90 * time.Second // one fault must heal within this
	chaosFinalBound      = 90 * time.Second // the fleet must converge within this after the last fault
)

// fault is one injected fault and how long the lab took to heal from it.
type fault struct {
	kind, target string
	injected     time.Time
	healed       time.Duration
	reported     time.Duration // in the host's status (a hung dnsmasq)
	err          error
}

// TestLabChaos runs random valid API changes from several clients while
// random faults hit the lab: agent SIGKILL, coordinator SIGKILL, dnsmasq
// SIGKILL and SIGSTOP, underlay link flaps and a corrupt plan file. The
// writers change networks, subnets, security groups, endpoint ports,
// routers and floating IPs, with If-Match on every update and delete, and
// race each other on one shared security group. Every fault must heal on
// its own within a bound; after the last one, every host converges on the
// last epoch and reports every resource applied, every acknowledged write
// is there and nothing else, every port has its namespace, FDB entries and
// DHCP lease, and each host's kernel state (nft rulesets, namespaces,
// links, addresses, routes, FDB, dnsmasq command lines) is exactly what a
// fresh apply of the same state on wiped hosts makes. The seed
// (STRATA_CHAOS_SEED) and the duration (STRATA_CHAOS_DURATION, default 2m)
// are printed.
func TestLabChaos(t *testing.T) {
	duration := chaosDefaultDuration
	if v := os.Getenv("STRATA_CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("STRATA_CHAOS_DURATION=%q: want a positive duration such as 10m", v)
		}
		duration = d
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("STRATA_CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("STRATA_CHAOS_SEED=%q: want an unsigned integer", v)
		}
		seed = n
	}
	t.Logf("chaos: seed %d (STRATA_CHAOS_SEED), duration %s (STRATA_CHAOS_DURATION), %d writers", seed, duration, chaosWriters)
	rng := rand.New(rand.NewPCG(seed, 0x5712))

	l := upLab(t, 3, 50)
	ctx := context.Background()
	applyManifest(t, l, chaosManifest)
	admin, err := l.AdminToken()
	if err != nil {
		t.Fatal(err)
	}
	writers := make([]*chaosWriter, chaosWriters)
	for i := range writers {
		c, err := apiclient.NewPinned(l.Endpoint(), admin, l.CAFile())
		if err != nil {
			t.Fatal(err)
		}
		c.HTTP.Timeout = 10 * time.Second
		writers[i] = &chaosWriter{id: i, l: l, c: c, rng: rand.New(rand.NewPCG(seed, uint64(i+1))),
			objs: map[string]*chaosObj{}, shared: map[int]bool{}}
		if err := writers[i].setup(); err != nil {
			t.Fatalf("writer %d setup: %v", i, err)
		}
	}
	waitCLI(t, l, 60*time.Second, "the writers' first resources", AllAliveAndConverged(3))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var quiet sync.RWMutex // held by a fault that needs the writers to pause
	for _, w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(200+w.rng.IntN(600)) * time.Millisecond):
				}
				quiet.RLock()
				err := w.step()
				quiet.RUnlock()
				if err != nil {
					t.Errorf("writer %d: %v", w.id, err)
					return
				}
			}
		}()
	}

	var faults []*fault
	var order []string // every kind once per round, in a random order
	deadline := time.Now().Add(duration)
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond)
		if len(order) == 0 {
			order = slices.Clone(faultKinds)
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		f := injectFault(t, l, rng, order[0], &quiet)
		order = order[1:]
		faults = append(faults, f)
		if f.err != nil {
			t.Errorf("%s %s: did not heal: %v", f.kind, f.target, f.err)
			break
		}
		var also string
		if f.reported > 0 {
			also = fmt.Sprintf(", reported as hung after %s", f.reported.Round(time.Millisecond))
		}
		t.Logf("fault %2d at +%-6s %-20s %-12s healed in %s%s", len(faults), f.injected.Sub(deadline.Add(-duration)).Round(time.Second),
			f.kind, f.target, f.healed.Round(time.Millisecond), also)
	}
	close(stop)
	wg.Wait()
	summarize(t, faults, writers)
	if t.Failed() {
		return
	}

	// After the faults: converge within a bound, then check everything.
	start := time.Now()
	st, err := l.WaitStatus(ctx, chaosFinalBound, "fleet converged after the faults", AllAliveAndConverged(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fleet converged on epoch %d %s after the last fault", st.Epoch, time.Since(start).Round(time.Millisecond))
	chaosCheckApplied(t, l)
	ports := chaosCheckWrites(t, l, writers)
	before := kernelStates(t, l) // before the DHCP clients of the next check touch the endpoints
	chaosCheckHosts(t, l, ports)
	chaosCheckFreshApply(t, l, before)
}

var faultKinds = []string{"agent-sigkill", "coordinator-sigkill", "dnsmasq-sigkill", "dnsmasq-sigstop", "underlay-flap", "corrupt-plan"}

// injectFault injects one fault of kind and waits until it has healed.
// A stopped dnsmasq is injected with the writers paused and the fleet
// caught up: a change to its network would replace it anyway, and the
// fault is about the agent noticing on its own.
func injectFault(t *testing.T, l *Lab, rng *rand.Rand, kind string, quiet *sync.RWMutex) *fault {
	f := &fault{kind: kind, injected: time.Now()}
	if kind == "dnsmasq-sigstop" {
		quiet.Lock()
		defer quiet.Unlock()
		for i := 1; i <= l.Hosts && f.err == nil; i++ {
			f.err = waitHostCaughtUp(l, i, time.Now(), false)
		}
		if f.err != nil {
			return f
		}
		f.injected = time.Now()
	}
	host := 1 + rng.IntN(l.Hosts)
	var since time.Time
	switch f.kind {
	case "agent-sigkill", "corrupt-plan":
		f.target = l.HostName(host)
		setAside, _ := filepath.Glob(filepath.Join(l.Dir, l.HostName(host), "plan.json.corrupt-*"))
		if f.err = l.StopAgent(host, syscall.SIGKILL); f.err != nil {
			return f
		}
		if f.kind == "corrupt-plan" {
			// Cut mid-write: the kind of damage a bad disk leaves.
			f.err = os.WriteFile(filepath.Join(l.Dir, l.HostName(host), "plan.json"), []byte(`{"epoch": 12, "resources": {"port/cha`), 0o600)
		}
		time.Sleep(time.Duration(rng.IntN(2000)) * time.Millisecond)
		if f.err == nil {
			f.err = l.StartAgent(host)
		}
		since = time.Now()
		if f.err == nil {
			f.err = waitHostCaughtUp(l, host, since, true)
		}
		if f.err == nil && f.kind == "corrupt-plan" {
			if m, _ := filepath.Glob(filepath.Join(l.Dir, l.HostName(host), "plan.json.corrupt-*")); len(m) <= len(setAside) {
				f.err = errors.New("the corrupt plan was not set aside")
			}
		}
	case "coordinator-sigkill":
		f.target = "coordinator"
		if f.err = l.StopCoordinator(syscall.SIGKILL); f.err != nil {
			return f
		}
		time.Sleep(time.Duration(500+rng.IntN(2500)) * time.Millisecond)
		if f.err = l.StartCoordinator(context.Background()); f.err != nil {
			return f
		}
		since = time.Now()
		for i := 1; i <= l.Hosts && f.err == nil; i++ {
			f.err = waitHostCaughtUp(l, i, since, false)
		}
	case "dnsmasq-sigkill", "dnsmasq-sigstop":
		ds := dnsmasqs(l)
		if len(ds) == 0 {
			f.err = errors.New("no dnsmasq runs")
			return f
		}
		d := ds[rng.IntN(len(ds))]
		f.target = fmt.Sprintf("pid %d", d.pid)
		sig := syscall.SIGKILL
		if f.kind == "dnsmasq-sigstop" {
			sig = syscall.SIGSTOP
		}
		d.stopped = time.Now()
		if f.err = syscall.Kill(d.pid, sig); f.err != nil {
			return f
		}
		since = time.Now()
		f.err = healWithin(chaosHealBound, func() error {
			for _, n := range dnsmasqs(l) {
				if n.pidFile == d.pidFile && n.pid != d.pid && n.state != "T" {
					if alive(d.pid) {
						return fmt.Errorf("old dnsmasq %d still exists beside %d", d.pid, n.pid)
					}
					return nil
				}
			}
			return fmt.Errorf("no new dnsmasq for %s", d.pidFile)
		})
		if f.err == nil && f.kind == "dnsmasq-sigstop" {
			// Healed with the new dnsmasq; the host's next report (within
			// its report interval) must say why.
			f.healed = time.Since(since)
			f.err = healWithin(chaosHealBound, func() error { return hungReported(l, d) })
			f.reported = time.Since(since)
			return f
		}
	case "underlay-flap":
		f.target = l.HostName(host)
		link := fmt.Sprintf("%sh%d", l.Short, host)
		if f.err = ip("link", "set", link, "down"); f.err != nil {
			return f
		}
		time.Sleep(time.Duration(1000+rng.IntN(4000)) * time.Millisecond)
		if f.err = ip("link", "set", link, "up"); f.err != nil {
			return f
		}
		since = time.Now()
		f.err = waitHostCaughtUp(l, host, since, false)
	}
	f.healed = time.Since(since)
	return f
}

// waitHostCaughtUp waits until host i is alive and has applied the epoch
// the coordinator had at since (or later); restarted, its report must also
// be from after since (a killed agent's last report proves nothing).
func waitHostCaughtUp(l *Lab, i int, since time.Time, restarted bool) error {
	return healWithin(chaosHealBound, func() error {
		c, err := l.Client()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var st api.ClusterStatus
		if err := c.Do(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
			return err
		}
		// The host must have applied every epoch that changed its plan
		// (commits to resources it does not hold do not wake it).
		var target uint64
		for _, line := range st.Hosts {
			if line.Name == l.HostName(i) {
				target = line.PlanEpoch
			}
		}
		var h api.Host
		if err := c.Do(ctx, http.MethodGet, "/v1/hosts/"+l.HostName(i), nil, &h); err != nil {
			return err
		}
		switch {
		case h.State != api.StateAlive || h.AppliedEpoch < target:
			return fmt.Errorf("%s is %s at epoch %d, want %d", h.Name, h.State, h.AppliedEpoch, target)
		case restarted && (h.Report == nil || h.Report.Reported.Before(since)):
			return fmt.Errorf("%s has not reported since its restart", h.Name)
		case restarted && h.Report.AppliedEpoch < target:
			return fmt.Errorf("%s reports epoch %d, want %d", h.Name, h.Report.AppliedEpoch, target)
		}
		return nil
	})
}

// hungReported checks that the agent of the stopped dnsmasq d says so:
// its status report shows the process restarted as hung, and its log
// has the failed liveness probes.
func hungReported(l *Lab, d dnsmasqProc) error {
	rel, err := filepath.Rel(l.Dir, d.pidFile)
	if err != nil {
		return err
	}
	host := strings.SplitN(rel, "/", 2)[0]
	c, err := l.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var h api.Host
	if err := c.Do(ctx, http.MethodGet, "/v1/hosts/"+host, nil, &h); err != nil {
		return err
	}
	if h.Report == nil {
		return fmt.Errorf("%s has not reported", host)
	}
	found := false
	for _, p := range h.Report.Processes {
		if strings.HasPrefix(p.LastReason, "hung") && p.LastRestart.After(d.stopped) {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("%s reports no dnsmasq restarted as hung since %s: %+v", host, d.stopped.Format(time.RFC3339Nano), h.Report.Processes)
	}
	log, _ := os.ReadFile(l.logFile(host))
	if !bytes.Contains(log, []byte("dnsmasq liveness probe failed")) || !bytes.Contains(log, []byte("hung: no DNS answer")) {
		return fmt.Errorf("%s's log has no failed liveness probe and hung restart", host)
	}
	return nil
}

func healWithin(limit time.Duration, ok func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := ok()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healed after %s: %w", limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dnsmasqProc is a dnsmasq of this lab, found in /proc by its pid file.
type dnsmasqProc struct {
	pid            int
	pidFile, state string
	stopped        time.Time // when the test signalled it
}

func dnsmasqs(l *Lab) []dnsmasqProc {
	var out []dnsmasqProc
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(raw, []byte("dnsmasq")) {
			continue
		}
		var pidFile string
		for _, a := range strings.Split(string(raw), "\x00") {
			if p, ok := strings.CutPrefix(a, "--pid-file="); ok && strings.HasPrefix(p, l.Dir+"/") {
				pidFile = p
			}
		}
		if pidFile == "" {
			continue
		}
		state := procState(pid)
		if state == "" || state == "Z" {
			continue
		}
		out = append(out, dnsmasqProc{pid: pid, pidFile: pidFile, state: state})
	}
	return out
}

func procState(pid int) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 {
		return f[0]
	}
	return ""
}

func alive(pid int) bool { s := procState(pid); return s != "" && s != "Z" }

func summarize(t *testing.T, faults []*fault, ws []*chaosWriter) {
	by := map[string][]time.Duration{}
	for _, f := range faults {
		if f.err == nil {
			by[f.kind] = append(by[f.kind], f.healed)
		}
	}
	var kinds []string
	for k := range by {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	n, raced, stale := 0, 0, 0
	for _, w := range ws {
		n, raced, stale = n+w.writes, raced+w.raced, stale+w.stale
	}
	t.Logf("chaos: %d faults injected, %d acknowledged writes by %d writers; %d writes raced on the shared group (412, read again, redone); %d stale If-Match refused (412)",
		len(faults), n, len(ws), raced, stale)
	for _, k := range kinds {
		ds := by[k]
		slices.Sort(ds)
		t.Logf("  %-20s x%-3d heal min %-8s median %-8s max %s", k, len(ds), ds[0].Round(time.Millisecond),
			ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
}
