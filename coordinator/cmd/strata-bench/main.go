// Command strata-bench measures the coordinator's hot paths and prints one
// line per figure: "BENCH <name> <value> <unit>". Every figure that has a
// baseline is also given as a ratio against it, run in the same process.
// With "gotest" it instead turns `go test -bench` output on stdin into
// BENCH lines, so `make bench` prints one table for the whole project.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "gotest" {
		convertGoBench()
		return
	}
	dir, err := os.MkdirTemp("", "strata-bench-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	if path := os.Getenv("STRATA_BENCH_CPUPROFILE"); path != "" {
		stop, err := cpuProfile(path)
		if err != nil {
			fail(err)
		}
		defer stop()
	}
	if os.Getenv("STRATA_BENCH_ONLY") == "scope" {
		if err := scopedFanout(dir); err != nil {
			fail(err)
		}
		return
	}
	if os.Getenv("STRATA_BENCH_ONLY") != "gossip" {
		schedulerThroughput()
	}
	budget := 20 * time.Minute
	if v := os.Getenv("STRATA_BENCH_GOSSIP_BUDGET"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			fail(fmt.Errorf("STRATA_BENCH_GOSSIP_BUDGET %q: want a duration such as 8m", v))
		}
		budget = d
	}
	udp, inproc := gossipSizes()
	if err := gossipBench(udp, inproc, 5*time.Second, budget); err != nil {
		fail(err)
	}
	if os.Getenv("STRATA_BENCH_ONLY") == "gossip" {
		return
	}
	if err := commitThroughput(dir); err != nil {
		fail(err)
	}
	if err := planFanout(dir); err != nil {
		fail(err)
	}
	if err := scopedFanout(dir); err != nil {
		fail(err)
	}
}

// cpuProfile writes a CPU profile of the run to path (to find where a
// figure's time goes: go tool pprof bin/strata-bench path).
func cpuProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "strata-bench:", err)
	os.Exit(1)
}

func bench(name string, value float64, unit string) {
	fmt.Printf("BENCH %s %.4g %s\n", name, value, unit)
}

// convertGoBench turns "BenchmarkX-2  10  123 ns/op  4.5 ratio" into
// BENCH lines, one per reported metric. It exits 1 when the input reports
// a failure, so a failed benchmark fails the pipe even without pipefail.
func convertGoBench() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	failed := false
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			if strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "panic:") {
				failed = true
			}
			if strings.HasPrefix(line, "BENCH ") || strings.HasPrefix(line, "FAIL") || strings.HasPrefix(line, "---") || strings.HasPrefix(line, "panic:") {
				fmt.Println(line)
			}
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		for i := 2; i+1 < len(f); i += 2 {
			fmt.Printf("BENCH %s %s %s\n", name, f[i], f[i+1])
		}
	}
	if sc.Err() != nil || failed {
		fmt.Fprintln(os.Stderr, "strata-bench: a benchmark failed")
		os.Exit(1)
	}
}

// gossipSizes are the pool sizes of the gossip figures: over loopback
// UDP in real time, 100 and 500 (STRATA_BENCH_GOSSIP="n1,n2,..."), and
// over the in-process network with stretched timers, 500 and 1,000
// (STRATA_BENCH_GOSSIP_INPROC; "0" runs none). The gossip runs start no
// new size after STRATA_BENCH_GOSSIP_BUDGET (20m); STRATA_BENCH_ONLY=gossip
// runs only them.
func gossipSizes() (udp, inproc []int) {
	return sizesFrom("STRATA_BENCH_GOSSIP", []int{100, 500}), sizesFrom("STRATA_BENCH_GOSSIP_INPROC", []int{500, 1000})
}

func sizesFrom(env string, def []int) []int {
	v := os.Getenv(env)
	if v == "" {
		return def
	}
	if v == "0" {
		return nil
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil || n < 2 {
			fail(fmt.Errorf("%s %q: want sizes of 2 or more, comma separated, or 0", env, v))
		}
		out = append(out, n)
	}
	return out
}
