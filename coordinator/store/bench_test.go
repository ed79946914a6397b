package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/strata-infra/strata/internal/etcdtest"
	"github.com/strata-infra/strata/pkg/api"
)

// BenchmarkEtcdCommitVsRawTxn measures store commits on etcd (resource,
// delta, epoch and trim in one transaction comparing the epoch) against
// the floor under them: a bare etcd transaction from the same client that
// compares one key and writes a value of the same size. Both run
// interleaved in blocks, in one process; the ratio is the figure (target:
// commits reach at least half the raw rate).
func BenchmarkEtcdCommitVsRawTxn(b *testing.B) {
	c := etcdtest.Require(b)
	cl, err := c.Client()
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	prefix := fmt.Sprintf("/strata-bench/%d/", time.Now().UnixNano())
	s, err := OpenEtcd(cl, EtcdOptions{Prefix: prefix}, Options{RetainDeltas: 1000})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	spec, _ := json.Marshal(api.ProjectSpec{Description: "benchmark project with a description of typical length"})
	val := string(make([]byte, 300))
	const block = 50
	var storeTime, rawTime time.Duration
	n, raw := 0, 0
	ctx := context.Background()
	for b.Loop() {
		start := time.Now()
		for range block {
			i := n
			n++
			_, _, err := s.Update(func(tx *Tx) error {
				_, _, err := tx.Put(api.Resource{Kind: "project", Name: fmt.Sprintf("p%d", i%500),
					Spec: append(spec[:len(spec)-1:len(spec)-1], fmt.Sprintf(`,"n":%d}`, i)...)})
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		storeTime += time.Since(start)
		start = time.Now()
		for range block {
			key, seq := prefix+"raw/seq", strconv.Itoa(raw)
			cmp := clientv3.Compare(clientv3.Value(key), "=", seq)
			if raw == 0 {
				cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
			}
			raw++
			resp, err := cl.Txn(ctx).If(cmp).Then(clientv3.OpPut(prefix+fmt.Sprintf("raw/p%d", raw%500), val),
				clientv3.OpPut(key, strconv.Itoa(raw))).Commit()
			if err != nil || !resp.Succeeded {
				b.Fatalf("raw txn %d: %v (succeeded %v)", raw, err, resp != nil && resp.Succeeded)
			}
		}
		rawTime += time.Since(start)
	}
	storeRate, rawRate := float64(n)/storeTime.Seconds(), float64(raw)/rawTime.Seconds()
	b.ReportMetric(storeRate, "commits/s")
	b.ReportMetric(rawRate, "raw-txns/s")
	b.ReportMetric(storeRate/rawRate, "commit/raw")
	fmt.Printf("BENCH etcd_commit_throughput %.0f commits/s\n", storeRate)
	fmt.Printf("BENCH etcd_raw_txn_throughput_baseline %.0f txns/s\n", rawRate)
	fmt.Printf("BENCH etcd_commit_vs_raw_txn %.2f ratio\n", storeRate/rawRate)
}
