package nettest

import (
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/netnsutil"
	"golang.org/x/sys/unix"
)

// Sink accepts TCP connections on port in namespace ns and discards what
// they send, until the test ends.
func Sink(t testing.TB, ns, port string) {
	t.Helper()
	var ln net.Listener
	must(t, netnsutil.Do(ns, func() (err error) {
		ln, err = net.Listen("tcp4", ":"+port)
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
}

// Stream sends from namespace ns to addr (host:port) on one TCP
// connection for d and returns Gbit/s, and the same per CPU-second this
// process spent meanwhile (sender, receiver when it is a Sink of this
// process, and the kernel's work done in their context): what the path
// costs, whatever share of a shared machine's CPUs the round got.
func Stream(t testing.TB, ns, addr string, d time.Duration) (gbits, perCPU float64) {
	t.Helper()
	var sent int64
	var took, cpu time.Duration
	err := netnsutil.Do(ns, func() error {
		c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 256<<10)
		cpu0, start := processCPU(), time.Now()
		for time.Since(start) < d {
			n, err := c.Write(buf)
			sent += int64(n)
			if err != nil {
				return err
			}
		}
		took, cpu = time.Since(start), processCPU()-cpu0
		return nil
	})
	if err != nil {
		t.Fatalf("send from %s to %s: %v", ns, addr, err)
	}
	gbits = float64(sent) * 8 / took.Seconds() / 1e9
	return gbits, gbits * took.Seconds() / cpu.Seconds()
}

// processCPU is the user and system time of this process so far.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Median is the median of v.
func Median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Path is one way to send a stream: from namespace NS to Addr
// (host:port), where a Sink listens.
type Path struct{ NS, Addr string }

// PairFigures are the figures of StreamPairs: Gbit/s of each path per
// pair, and per pair the ratio b over a of Gbit/s and of Gbit per
// CPU-second.
type PairFigures struct{ A, B, Ratio, CPURatio []float64 }

// StreamPairs measures paths a and b in n pairs of d-long streams, back
// to back, the order alternating (a first in even pairs), so that the
// load of a shared machine weighs on both alike.
func StreamPairs(t testing.TB, n int, a, b Path, d time.Duration) PairFigures {
	t.Helper()
	var f PairFigures
	for i := range n {
		var g, eff [2]float64
		for k := range 2 {
			j := (i + k) % 2
			p := []Path{a, b}[j]
			g[j], eff[j] = Stream(t, p.NS, p.Addr, d)
		}
		f.A, f.B = append(f.A, g[0]), append(f.B, g[1])
		f.Ratio, f.CPURatio = append(f.Ratio, g[1]/g[0]), append(f.CPURatio, eff[1]/eff[0])
	}
	return f
}

// Report reports the median Gbit/s of each path (named a and b), the
// median ratio b/a with its lowest and highest, the same per CPU-second,
// and the number of pairs.
func (f PairFigures) Report(bm *testing.B, a, b string) {
	bm.ReportMetric(Median(f.A), a+"-Gbit/s")
	bm.ReportMetric(Median(f.B), b+"-Gbit/s")
	bm.ReportMetric(Median(f.Ratio), b+"/"+a)
	bm.ReportMetric(slices.Min(f.Ratio), b+"/"+a+"-min")
	bm.ReportMetric(slices.Max(f.Ratio), b+"/"+a+"-max")
	bm.ReportMetric(Median(f.CPURatio), b+"/"+a+"-per-cpu")
	bm.ReportMetric(slices.Min(f.CPURatio), b+"/"+a+"-per-cpu-min")
	bm.ReportMetric(slices.Max(f.CPURatio), b+"/"+a+"-per-cpu-max")
	bm.ReportMetric(float64(len(f.Ratio)), "pairs")
}
