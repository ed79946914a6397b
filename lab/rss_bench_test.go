package lab

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
)

// BenchmarkLabAgentRSS: the resident memory of the real strata-agent
// processes of a 2-host lab once they hold 200 networks and 2,000 ports
// (1,000 bound to each host, every one in a security group with a
// remote-group rule), read from /proc/<pid>/status of each agent once it
// converged, and again at rest (its RSS steady for 3 s, after the agent
// handed back what its last passes dropped). The networks have no DHCP: dnsmasq processes are not the
// agent's memory. The lab is set up and torn down on every call: 2,400
// writes, each applied by both agents as it commits, took 22 minutes on
// the shared 2-core machine (load average 45).
func BenchmarkLabAgentRSS(b *testing.B) {
	const networks, ports = 200, 2000
	l := testLab(b, 2, 10000)
	if err := l.Up(context.Background()); err != nil {
		b.Fatal(err)
	}
	waitCLI(b, l, 30*time.Second, "hosts up", AllAliveAndConverged(2))
	idle := agentRSS(b, l)
	c, err := l.Client()
	if err != nil {
		b.Fatal(err)
	}
	put := func(path string, spec any) error {
		return c.Do(context.Background(), http.MethodPut, path, map[string]any{"spec": spec}, nil)
	}
	must := func(err error) {
		if err != nil {
			b.Fatal(err)
		}
	}
	must(put("/v1/projects/rss", map[string]any{}))
	must(put("/v1/quotas/rss", map[string]any{"networks": -1, "ports": -1})) // -1: no limit
	must(put("/v1/projects/rss/securitygroups/web", map[string]any{"rules": []map[string]any{
		{"direction": "egress"},
		{"direction": "ingress", "protocol": "tcp", "ports": "443"},
		{"direction": "ingress", "protocol": "tcp", "ports": "22", "remote_cidr": "10.0.0.0/8"},
		{"direction": "ingress", "remote_group": "web"},
	}}))
	var jobs []func() error
	for i := range networks {
		n := fmt.Sprintf("n%03d", i)
		jobs = append(jobs, func() error {
			if err := put("/v1/projects/rss/networks/"+n, map[string]any{}); err != nil {
				return err
			}
			return put("/v1/projects/rss/subnets/s"+n, map[string]any{"network": n, "dhcp": false,
				"cidr": fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256)})
		})
	}
	must(parallel(8, jobs))
	jobs = jobs[:0]
	for i := range ports {
		spec := map[string]any{"network": fmt.Sprintf("n%03d", i%networks), "host": l.HostName(1 + i%2),
			"security_groups": []string{"web"}}
		jobs = append(jobs, func() error { return put(fmt.Sprintf("/v1/projects/rss/ports/p%04d", i), spec) })
	}
	start := time.Now()
	must(parallel(8, jobs))
	_, took := waitCLI(b, l, 10*time.Minute, "200 networks and 2,000 ports converged", AllAliveAndConverged(2))
	b.Logf("created %d networks and %d ports; converged %v after the last port", networks, ports, took)
	b.Logf("created and converged in %v", time.Since(start))
	converged := agentRSS(b, l)
	// At rest: each agent returns what its last passes dropped once no
	// pass ran for a second (reconcile's OnQuiet); wait until the RSS of
	// every agent held within 1% for 3 s.
	var rss []int
	var series [][]int
	settled, err := testenv.Poll(2*time.Minute, func() error {
		time.Sleep(250 * time.Millisecond)
		series = append(series, agentRSS(b, l))
		if len(series) < 12 {
			return fmt.Errorf("%d readings", len(series))
		}
		last := series[len(series)-12:]
		for i := range last[0] {
			lo, hi := last[0][i], last[0][i]
			for _, r := range last {
				lo, hi = min(lo, r[i]), max(hi, r[i])
			}
			if float64(hi-lo) > 0.01*float64(hi) {
				return fmt.Errorf("agent %s: VmRSS %d..%d KiB over the last 3 s", l.HostName(i+1), lo, hi)
			}
		}
		rss = series[len(series)-1]
		return nil
	})
	if err != nil {
		b.Fatalf("agents' RSS did not settle: %v", err)
	}
	b.Logf("RSS settled %v after convergence", settled.Round(time.Second))
	worst, worstIdle := 0, 0
	for i := range rss {
		b.Logf("agent %s: VmRSS %d KiB idle, %d KiB on converging, %d KiB at rest holding %d networks and %d ports", l.HostName(i+1), idle[i], converged[i], rss[i], networks, ports)
		worst, worstIdle = max(worst, rss[i]), max(worstIdle, idle[i])
	}
	b.ReportMetric(float64(worst)/1024, "agent-rss-MiB")
	b.ReportMetric(float64(worstIdle)/1024, "agent-idle-rss-MiB")
	b.ReportMetric(float64(slices.Max(converged))/1024, "agent-converging-rss-MiB")
	// The Ceph libraries live in strata-rbd, which an agent starts on its
	// first Ceph use: its memory is reported, not folded away.
	helpers := helperRSS(b, l)
	for i, kib := range helpers {
		if kib == 0 {
			b.Logf("agent %s: no strata-rbd running (no Ceph use)", l.HostName(i+1))
		} else {
			b.Logf("agent %s: its strata-rbd VmRSS %d KiB", l.HostName(i+1), kib)
		}
	}
	if m := slices.Max(helpers); m > 0 {
		b.ReportMetric(float64(m)/1024, "rbd-helper-rss-MiB")
	}
}

// helperRSS sums VmRSS (KiB) of the strata-rbd children of each agent of
// l (0: none runs).
func helperRSS(b *testing.B, l *Lab) []int {
	b.Helper()
	out := make([]int, l.Hosts)
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil || !strings.Contains(string(st), "Name:\tstrata-rbd\n") {
			continue
		}
		for i := 1; i <= l.Hosts; i++ {
			if strings.Contains(string(st), fmt.Sprintf("\nPPid:\t%d\n", l.AgentPID(i))) {
				out[i-1] += statusKiB(string(st), "VmRSS:")
			}
		}
	}
	return out
}

// statusKiB reads one "<key> N kB" line of /proc/<pid>/status (-1: none).
func statusKiB(status, key string) int {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// agentRSS reads VmRSS (KiB) of each running agent of l.
func agentRSS(b *testing.B, l *Lab) []int {
	b.Helper()
	var out []int
	for i := 1; i <= l.Hosts; i++ {
		pid := l.AgentPID(i)
		if pid <= 0 {
			b.Fatalf("agent %s is not running", l.HostName(i))
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			b.Fatal(err)
		}
		kib := statusKiB(string(st), "VmRSS:")
		if kib < 0 {
			b.Fatalf("no VmRSS in /proc/%d/status", pid)
		}
		out = append(out, kib)
	}
	return out
}

// parallel runs jobs on n workers and returns the first error.
func parallel(n int, jobs []func() error) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan func() error)
	for range n {
		wg.Go(func() {
			for j := range next {
				if err := j(); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
	return first
}
