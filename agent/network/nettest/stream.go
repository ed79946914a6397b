package nettest

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/netnsutil"
	"golang.org/x/sys/unix"
)

// streamBuf is the size of one write of a Stream and of one read of a
// Sink: large, so that system calls weigh little against what the path
// costs per byte, as in iperf.
const streamBuf = 256 << 10

// sinkReports carries, per stream token, what the Sink's receiving thread
// spent on that stream to the Stream that sent it (same process).
var (
	sinkReports sync.Map // uint64 -> chan sinkReport
	streamSeq   atomic.Uint64
)

type sinkReport struct {
	bytes int64
	cpu   time.Duration
	err   error
}

// Sink accepts TCP connections on port in namespace ns and discards what
// they send, until the test ends. Each connection is read by a goroutine
// locked to its own thread, whose CPU time (including the kernel's
// receive work done in its context) it reports to the Stream that sent it.
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
			go receive(c)
		}
	}()
}

// receive reads a stream's 8-byte token, then everything until EOF, and
// reports the bytes and its thread's CPU time under the token.
func receive(c net.Conn) {
	defer c.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadCPU()
	var tok [8]byte
	if _, err := io.ReadFull(c, tok[:]); err != nil {
		return
	}
	var r sinkReport
	buf := make([]byte, streamBuf)
	for {
		n, err := c.Read(buf)
		r.bytes += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			r.err = err
			break
		}
	}
	r.cpu = threadCPU() - cpu0
	if ch, ok := sinkReports.Load(binary.BigEndian.Uint64(tok[:])); ok {
		ch.(chan sinkReport) <- r
	}
}

// Stream sends from namespace ns to addr (host:port), where a Sink of this
// process listens, on one TCP connection for d, and returns Gbit/s
// delivered (until the Sink has read the last byte), and Gbit per
// CPU-second that the sending and the receiving thread spent, each
// counting the kernel's work done in its context (the path's softirqs
// run there): what the path costs per bit, whatever share of a shared
// machine's CPUs the round got, and without the Go runtime's own threads.
func Stream(t testing.TB, ns, addr string, d time.Duration) (gbits, perCPU float64) {
	t.Helper()
	tok := streamSeq.Add(1)
	reports := make(chan sinkReport, 1)
	sinkReports.Store(tok, reports)
	defer sinkReports.Delete(tok)
	var sent int64
	var took, sendCPU time.Duration
	err := netnsutil.Do(ns, func() error { // runs locked to its thread
		c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, streamBuf)
		binary.BigEndian.PutUint64(buf, tok)
		if _, err := c.Write(buf[:8]); err != nil {
			return err
		}
		cpu0, start := threadCPU(), time.Now()
		for time.Since(start) < d {
			n, err := c.Write(buf)
			sent += int64(n)
			if err != nil {
				return err
			}
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return err
		}
		// The Sink closes once it read everything: wait for that.
		if _, err := c.Read(buf[:1]); err != io.EOF {
			return fmt.Errorf("waiting for the sink to finish: %v", err)
		}
		took, sendCPU = time.Since(start), threadCPU()-cpu0
		return nil
	})
	if err != nil {
		t.Fatalf("send from %s to %s: %v", ns, addr, err)
	}
	var r sinkReport
	select {
	case r = <-reports:
	case <-time.After(30 * time.Second):
		t.Fatalf("stream to %s: the sink reported nothing (is it a Sink of this process?)", addr)
	}
	if r.err != nil || r.bytes != sent {
		t.Fatalf("stream to %s: sent %d bytes, the sink read %d (%v)", addr, sent, r.bytes, r.err)
	}
	gbits = float64(sent) * 8 / took.Seconds() / 1e9
	return gbits, float64(sent) * 8 / 1e9 / (sendCPU + r.cpu).Seconds()
}

// threadCPU is the user and system time of the calling thread so far
// (the caller is locked to it).
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
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
// median ratio b/a with its lowest and highest, the same per CPU-second
// with its quartiles, and the number of pairs.
func (f PairFigures) Report(bm *testing.B, a, b string) {
	bm.ReportMetric(Median(f.A), a+"-Gbit/s")
	bm.ReportMetric(Median(f.B), b+"-Gbit/s")
	bm.ReportMetric(Median(f.Ratio), b+"/"+a)
	bm.ReportMetric(slices.Min(f.Ratio), b+"/"+a+"-min")
	bm.ReportMetric(slices.Max(f.Ratio), b+"/"+a+"-max")
	bm.ReportMetric(Median(f.CPURatio), b+"/"+a+"-per-cpu")
	bm.ReportMetric(slices.Min(f.CPURatio), b+"/"+a+"-per-cpu-min")
	bm.ReportMetric(slices.Max(f.CPURatio), b+"/"+a+"-per-cpu-max")
	q1, q3 := Quartiles(f.CPURatio)
	bm.ReportMetric(q1, b+"/"+a+"-per-cpu-q1")
	bm.ReportMetric(q3, b+"/"+a+"-per-cpu-q3")
	bm.ReportMetric(float64(len(f.Ratio)), "pairs")
}

// Quartiles are the medians of the lower and the upper half of v (the
// middle element in neither when len(v) is odd).
func Quartiles(v []float64) (q1, q3 float64) {
	s := slices.Sorted(slices.Values(v))
	h := len(s) / 2
	if h == 0 {
		return Median(s), Median(s)
	}
	return Median(s[:h]), Median(s[len(s)-h:])
}
