package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network/nettest"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
	"github.com/strata-infra/strata/pkg/netnsutil"
)

// Chaos test bounds. The duration comes from STRATA_CHAOS_DURATION.
const (
	chaosDefaultDuration = 2 * time.Minute
	chaosWriters         = 3
	chaosPortsPerWriter  = 4
	chaosHealBound       = 90 * time.Second // one fault must heal within this
	chaosFinalBound      = 90 * time.Second // the fleet must converge within this after the last fault
)

const chaosManifest = `
kind: project
name: chaos
---
kind: network
project: chaos
name: n1
---
kind: subnet
project: chaos
name: s1
spec: {network: n1, cidr: 10.61.0.0/24}
---
kind: network
project: chaos
name: n2
---
kind: subnet
project: chaos
name: s2
spec: {network: n2, cidr: 10.62.0.0/24}
`

// fault is one injected fault and how long the lab took to heal from it.
type fault struct {
	kind, target string
	injected     time.Time
	healed       time.Duration
	err          error
}

// TestLabChaos runs random valid API changes from several clients while
// random faults hit the lab: agent SIGKILL, coordinator SIGKILL, dnsmasq
// SIGKILL and SIGSTOP, underlay link flaps and a corrupt plan file. Every
// fault must heal on its own within a bound; after the last one, every
// host converges on the last epoch, every acknowledged write is there,
// every port has its namespace, FDB entries and DHCP lease, and nothing is
// left that the plan does not want. The seed (STRATA_CHAOS_SEED) and the
// duration (STRATA_CHAOS_DURATION, default 2m) are printed.
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

	l := testLab(t, 3, 50)
	ctx := context.Background()
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	waitCLI(t, l, 60*time.Second, "hosts up", AllAliveAndConverged(3))
	applyManifest(t, l, chaosManifest)
	waitCLI(t, l, 60*time.Second, "networks", AllAliveAndConverged(3))
	admin, err := l.AdminToken()
	if err != nil {
		t.Fatal(err)
	}

	// Writers: each owns its port names, so the last acknowledged write
	// of a name says what must be there at the end.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	want := make([]map[string]*api.PortSpec, chaosWriters)
	var writes [chaosWriters]int
	for w := 0; w < chaosWriters; w++ {
		want[w] = map[string]*api.PortSpec{}
		wrng := rand.New(rand.NewPCG(seed, uint64(w+1)))
		c, err := apiclient.NewPinned(l.Endpoint(), admin, l.CAFile())
		if err != nil {
			t.Fatal(err)
		}
		c.HTTP.Timeout = 10 * time.Second
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Duration(200+wrng.IntN(600)) * time.Millisecond):
				}
				name := fmt.Sprintf("w%d-p%d", w, wrng.IntN(chaosPortsPerWriter))
				var spec *api.PortSpec
				if want[w][name] == nil {
					spec = &api.PortSpec{Network: []string{"n1", "n2"}[wrng.IntN(2)], Host: l.HostName(1 + wrng.IntN(3)), Owner: api.PortOwnerEndpoint}
				}
				if err := chaosWrite(c, name, spec); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				want[w][name] = spec
				writes[w]++
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
		f := injectFault(t, l, rng, order[0])
		order = order[1:]
		faults = append(faults, f)
		if f.err != nil {
			t.Errorf("%s %s: did not heal: %v", f.kind, f.target, f.err)
			break
		}
		t.Logf("fault %2d at +%-6s %-16s %-12s healed in %s", len(faults), f.injected.Sub(deadline.Add(-duration)).Round(time.Second),
			f.kind, f.target, f.healed.Round(time.Millisecond))
	}
	close(stop)
	wg.Wait()
	summarize(t, faults, writes[:])
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
	ports := chaosCheckWrites(t, l, want)
	chaosCheckHosts(t, l, ports)
}

// chaosWrite puts (spec != nil) or deletes port name until the API
// acknowledges it: a write that got no answer (the coordinator was
// killed) may or may not have been committed, so it is sent again; both
// are idempotent.
func chaosWrite(c *apiclient.Client, name string, spec *api.PortSpec) error {
	path := apiclient.ResourcePath("ports", "chaos", name)
	give := time.Now().Add(chaosHealBound)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		var err error
		if spec != nil {
			buf, _ := json.Marshal(spec)
			err = c.Do(ctx, http.MethodPut, path, api.ResourceRequest{Name: name, Spec: buf}, nil)
		} else {
			err = c.Do(ctx, http.MethodDelete, path, nil, nil)
			var ae *api.Error
			if errors.As(err, &ae) && ae.Code == http.StatusNotFound {
				err = nil
			}
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(give) {
			return fmt.Errorf("port %s: no acknowledgement in %s: %w", name, chaosHealBound, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

var faultKinds = []string{"agent-sigkill", "coordinator-sigkill", "dnsmasq-sigkill", "dnsmasq-sigstop", "underlay-flap", "corrupt-plan"}

// injectFault injects one fault of kind and waits until it has healed.
func injectFault(t *testing.T, l *Lab, rng *rand.Rand, kind string) *fault {
	f := &fault{kind: kind, injected: time.Now()}
	host := 1 + rng.IntN(l.Hosts)
	var since time.Time
	switch f.kind {
	case "agent-sigkill", "corrupt-plan":
		f.target = l.HostName(host)
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
			f.err = waitHostCaughtUp(l, host, since)
		}
		if f.err == nil && f.kind == "corrupt-plan" {
			if m, _ := filepath.Glob(filepath.Join(l.Dir, l.HostName(host), "plan.json.corrupt-*")); len(m) == 0 {
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
			f.err = waitHostCaughtUp(l, i, since)
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
		f.err = waitHostCaughtUp(l, host, since)
	}
	f.healed = time.Since(since)
	return f
}

// waitHostCaughtUp waits until host i is alive and has applied the epoch
// the coordinator had at since (or later).
func waitHostCaughtUp(l *Lab, i int, since time.Time) error {
	var target uint64
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
		if target == 0 {
			target = st.Epoch
		}
		for _, h := range st.Hosts {
			if h.Name == l.HostName(i) {
				if h.State == api.StateAlive && h.AppliedEpoch >= target {
					return nil
				}
				return fmt.Errorf("%s is %s at epoch %d, want %d", h.Name, h.State, h.AppliedEpoch, target)
			}
		}
		return fmt.Errorf("%s not in status", l.HostName(i))
	})
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

func summarize(t *testing.T, faults []*fault, writes []int) {
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
	n := 0
	for _, w := range writes {
		n += w
	}
	t.Logf("chaos: %d faults injected, %d acknowledged writes by %d writers", len(faults), n, len(writes))
	for _, k := range kinds {
		ds := by[k]
		slices.Sort(ds)
		t.Logf("  %-20s x%-3d heal min %-8s median %-8s max %s", k, len(ds), ds[0].Round(time.Millisecond),
			ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
}

// chaosPort is a port the writers left in place, as the API has it.
type chaosPort struct {
	name, network, ip, mac string
	host                   int
}

// chaosCheckWrites compares the API's ports with every writer's last
// acknowledged write and returns the ports that must exist.
func chaosCheckWrites(t *testing.T, l *Lab, want []map[string]*api.PortSpec) []chaosPort {
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	var rs []api.Resource
	if err := c.Do(context.Background(), http.MethodGet, apiclient.ResourcePath("ports", "chaos", ""), nil, &rs); err != nil {
		t.Fatal(err)
	}
	got := map[string]api.PortSpec{}
	for _, r := range rs {
		var s api.PortSpec
		_ = json.Unmarshal(r.Spec, &s)
		if s.Owner == api.PortOwnerEndpoint {
			got[r.Name] = s
		}
	}
	var out []chaosPort
	for _, w := range want {
		for name, spec := range w {
			g, ok := got[name]
			switch {
			case spec == nil && ok:
				t.Errorf("port %s: deleted (acknowledged) but still there", name)
			case spec != nil && !ok:
				t.Errorf("port %s: written (acknowledged) but missing", name)
			case spec != nil && (g.Network != spec.Network || g.Host != spec.Host):
				t.Errorf("port %s: %s on %s, want %s on %s", name, g.Network, g.Host, spec.Network, spec.Host)
			case spec != nil:
				h, _ := strconv.Atoi(strings.TrimPrefix(g.Host, "h"))
				out = append(out, chaosPort{name: name, network: g.Network, ip: g.FixedIPs[0].IP, mac: g.MAC, host: h})
			}
			delete(got, name)
		}
	}
	for name := range got {
		t.Errorf("port %s exists, but no writer's acknowledged write made it", name)
	}
	t.Logf("%d ports wanted after the writes, all as last acknowledged", len(out))
	return out
}

// chaosCheckHosts checks every port's namespace, FDB entries and DHCP
// lease, and that no namespace, link, nft reference, dnsmasq or host entry
// is left that the plan does not want.
func chaosCheckHosts(t *testing.T, l *Lab, ports []chaosPort) {
	ctx := context.Background()
	wantNS := map[string]bool{l.ExternalNamespace(): true}
	for i := 1; i <= l.Hosts; i++ {
		wantNS[l.Namespace(i)] = true
	}
	macs := map[int]string{}
	for i := 1; i <= l.Hosts; i++ {
		macs[i] = fdb(t, l.Namespace(i))
	}
	onHost := map[int]int{}
	for _, p := range ports {
		ns := l.EndpointNamespace(p.host, "chaos", p.name)
		wantNS[ns] = true
		onHost[p.host]++
		got, err := nettest.DHCP(ctx, t, ns, "eth0")
		if err != nil || got != p.ip {
			t.Errorf("port %s: DHCP lease %q (%v), want %s", p.name, got, err, p.ip)
		}
		// Every other host with a port on the same network has its MAC.
		for _, q := range ports {
			if q.network == p.network && q.host != p.host && !strings.Contains(macs[q.host], p.mac) {
				t.Errorf("port %s (%s on h%d): not in the FDB of h%d", p.name, p.mac, p.host, q.host)
			}
		}
	}
	// DHCP: one dnsmasq per network, none stopped; their namespaces wanted.
	ds := dnsmasqs(l)
	if len(ds) != 2 {
		t.Errorf("%d dnsmasq processes, want 2 (one per network): %+v", len(ds), ds)
	}
	for _, d := range ds {
		if d.state == "T" {
			t.Errorf("dnsmasq %d is left stopped", d.pid)
		}
	}
	names, err := netnsutil.List(l.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.Contains(n, "-dhcp-") {
			continue // counted by their dnsmasq above
		}
		if !wantNS[n] {
			t.Errorf("namespace %s is left over: the plan does not want it", n)
		}
	}
	for n := range wantNS {
		if !slices.Contains(names, n) {
			t.Errorf("namespace %s is missing", n)
		}
	}
	// Links and nft: each host has one endpoint veth per port on it, and
	// its firewall names no link that is gone.
	for i := 1; i <= l.Hosts; i++ {
		out, err := exec.Command("ip", "-n", l.Namespace(i), "-o", "link", "show").CombinedOutput()
		if err != nil {
			t.Fatalf("ip link in %s: %v", l.Namespace(i), err)
		}
		var veths []string
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], "sep-") {
				veths = append(veths, strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":"))
			}
		}
		if len(veths) != onHost[i] {
			t.Errorf("h%d has %d endpoint veths %v, want %d", i, len(veths), veths, onHost[i])
		}
		nftOut, err := exec.Command("ip", "netns", "exec", l.Namespace(i), "nft", "list", "ruleset").CombinedOutput()
		if err != nil {
			t.Fatalf("nft in %s: %v %s", l.Namespace(i), err, nftOut)
		}
		for _, w := range strings.FieldsFunc(string(nftOut), func(r rune) bool {
			return r == '"' || r == ' ' || r == '\n' || r == '\t' || r == ',' || r == '{' || r == '}'
		}) {
			if strings.HasPrefix(w, "sep-") && !slices.Contains(veths, w) {
				t.Errorf("h%d: nft ruleset still names %s, a link that is gone", i, w)
			}
		}
	}
	// Host entries: exactly the lab's hosts.
	var hs []api.Host
	stratactl(t, l, &hs, "hosts", "list")
	var hnames []string
	for _, h := range hs {
		hnames = append(hnames, h.Name+"="+h.State)
	}
	if strings.Join(hnames, ",") != "h1=alive,h2=alive,h3=alive" {
		t.Errorf("host entries %v, want h1..h3 alive and nothing else", hnames)
	}
}
