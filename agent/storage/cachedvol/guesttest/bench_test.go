package guesttest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/storage/cachedvol"
	"github.com/strata-infra/strata/agent/storage/dmcache"
	"github.com/strata-infra/strata/internal/testenv"
)

const (
	envBench    = "STRATA_CV_BENCH" // seconds each fio run lasts
	benchPrefix = "CACHEDVOL-BENCH "
)

// BenchmarkCachedVolumeFio boots the guest with fio and measures, in one
// run against the same image: 4 KiB random-write IOPS and p99 latency on
// a writeback-cached against an uncached krbd device, at queue depth 1 and
// 32, and the flush throughput against the raw sequential write speed of
// the image. Ratios are reported beside the figures (the target:
// at least 5x the IOPS at queue depth 1).
func BenchmarkCachedVolumeFio(b *testing.B) {
	// One guest run measures everything (several minutes under TCG): the
	// framework's later calls with a larger b.N report the same figures.
	if benchFigures == nil {
		benchFigures = measureFio(b)
	}
	fig := benchFigures
	for _, k := range []string{"uncached_qd1_iops", "cached_qd1_iops", "uncached_qd32_iops", "cached_qd32_iops",
		"uncached_qd1_p99_us", "cached_qd1_p99_us", "uncached_qd32_p99_us", "cached_qd32_p99_us", "flush_MBps", "raw_write_MBps"} {
		b.ReportMetric(fig[k], k)
	}
	ratio := func(a, c float64) float64 {
		if c == 0 {
			return 0
		}
		return a / c
	}
	b.ReportMetric(ratio(fig["cached_qd1_iops"], fig["uncached_qd1_iops"]), "iops_ratio_qd1")
	b.ReportMetric(ratio(fig["cached_qd32_iops"], fig["uncached_qd32_iops"]), "iops_ratio_qd32")
	b.ReportMetric(ratio(fig["uncached_qd1_p99_us"], fig["cached_qd1_p99_us"]), "p99_gain_qd1")
	b.ReportMetric(ratio(fig["uncached_qd32_p99_us"], fig["cached_qd32_p99_us"]), "p99_gain_qd32")
	b.ReportMetric(ratio(fig["flush_MBps"], fig["raw_write_MBps"]), "flush_to_raw_ratio")
}

// benchFigures are the figures of this process's one guest run.
var benchFigures map[string]float64

func measureFio(b *testing.B) map[string]float64 {
	r := newGuestRig(b, "bench")
	secs := 10
	o := r.opts(b, map[string]string{envBench: strconv.Itoa(secs)})
	o.Tools = []string{"fio"}
	res, err := r.h.RunPackage(b.Context(), pkg, "^TestGuestBench$", o)
	if err != nil {
		if res != nil {
			b.Fatalf("%v\n%s", err, res.Output)
		}
		b.Fatal(err)
	}
	b.Logf("guest:\n%s", res.Output)
	fig := map[string]float64{}
	for _, m := range regexp.MustCompile(benchPrefix+`(\S+) (\S+)`).FindAllStringSubmatch(res.Output, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		fig[m[1]] = v
	}
	if len(fig) == 0 {
		b.Fatal("the guest printed no figures")
	}
	return fig
}

// TestGuestBench is the guest half of BenchmarkCachedVolumeFio.
func TestGuestBench(t *testing.T) {
	requireGuest(t)
	secs := os.Getenv(envBench)
	if secs == "" {
		t.Skipf("only from BenchmarkCachedVolumeFio (%s)", envBench)
	}
	guestSetup(t)
	ctx := t.Context()
	m := manager(t.TempDir(), "/dev/ram0")
	img := image(t, "bench")
	report := func(name string, v float64) { fmt.Printf("%s%s %.1f\n", benchPrefix, name, v) }

	dev, err := m.Attach(ctx, uncached(writeback("plain", img)))
	if err != nil {
		t.Fatal(err)
	}
	// Write the region once so both runs overwrite allocated objects.
	fio(t, dev, "prefill", "--rw=write", "--bs=1M", "--iodepth=8", "--size=64M")
	raw := fio(t, dev, "raw", "--rw=write", "--bs=1M", "--iodepth=8", "--size=64M")
	report("raw_write_MBps", raw.bw/1e6)
	for _, qd := range []string{"1", "32"} {
		f := fio(t, dev, "uncached-qd"+qd, "--rw=randwrite", "--bs=4k", "--iodepth="+qd, "--size=32M", "--time_based", "--runtime="+secs)
		report("uncached_qd"+qd+"_iops", f.iops)
		report("uncached_qd"+qd+"_p99_us", f.p99/1e3)
	}
	if err := m.Detach(ctx, "plain"); err != nil {
		t.Fatal(err)
	}

	dev, err = m.Attach(ctx, writeback("cached", img))
	if err != nil {
		t.Fatal(err)
	}
	for _, qd := range []string{"1", "32"} {
		f := fio(t, dev, "cached-qd"+qd, "--rw=randwrite", "--bs=4k", "--iodepth="+qd, "--size=32M", "--time_based", "--runtime="+secs)
		report("cached_qd"+qd+"_iops", f.iops)
		report("cached_qd"+qd+"_p99_us", f.p99/1e3)
	}
	st := dirty(t, m, "cached")
	start := time.Now()
	if err := m.Detach(ctx, "cached"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("flushed %d dirty bytes in %s", st.DirtyBytes(), took)
	report("flush_MBps", float64(st.DirtyBytes())/took.Seconds()/1e6)
}

type cachedVolume = cachedvol.Volume

func uncached(v cachedVolume) cachedVolume { v.Mode = dmcache.None; return v }

type fioResult struct{ iops, p99, bw float64 }

// fio runs one direct-I/O job on dev and reads its JSON report.
func fio(t *testing.T, dev, name string, args ...string) fioResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testenv.Scale(5*time.Minute))
	defer cancel()
	all := append([]string{"--name=" + name, "--filename=" + dev, "--ioengine=libaio", "--direct=1",
		"--output-format=json"}, args...)
	out, err := exec.CommandContext(ctx, "fio", all...).Output()
	if err != nil {
		t.Fatalf("fio %s: %v\n%s", strings.Join(all, " "), err, out)
	}
	var rep struct {
		Jobs []struct {
			Write struct {
				IOPS  float64 `json:"iops"`
				BW    float64 `json:"bw_bytes"`
				ClatN struct {
					Percentile map[string]float64 `json:"percentile"`
				} `json:"clat_ns"`
			} `json:"write"`
		} `json:"jobs"`
	}
	if i := strings.IndexByte(string(out), '{'); i > 0 {
		out = out[i:] // fio prints notes before the JSON
	}
	if err := json.Unmarshal(out, &rep); err != nil || len(rep.Jobs) == 0 {
		t.Fatalf("fio %s: report: %v\n%s", name, err, out)
	}
	w := rep.Jobs[0].Write
	r := fioResult{iops: w.IOPS, bw: w.BW, p99: w.ClatN.Percentile["99.000000"]}
	t.Logf("fio %s: %.0f IOPS, p99 %.0f us, %.1f MB/s", name, r.iops, r.p99/1e3, r.bw/1e6)
	return r
}
