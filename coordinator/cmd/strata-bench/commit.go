package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

const commits = 2000

// commitThroughput measures epoch commits (resource write, epoch bump,
// delta append and trim, fsync) against the floor under them: a bare bbolt
// transaction writing one key of the same size with the same fsync.
func commitThroughput(dir string) error {
	st, err := store.Open(filepath.Join(dir, "epochs.db"), store.Options{RetainDeltas: 1000})
	if err != nil {
		return err
	}
	defer st.Close()
	spec, _ := json.Marshal(api.ProjectSpec{Description: "benchmark project with a description of typical length"})
	start := time.Now()
	for i := 0; i < commits; i++ {
		_, _, err := st.Update(func(tx *store.Tx) error {
			_, _, err := tx.Put(api.Resource{Kind: "project", Name: fmt.Sprintf("p%d", i%500), Spec: append(spec[:len(spec)-1:len(spec)-1], []byte(fmt.Sprintf(`,"n":%d}`, i))...)})
			return err
		})
		if err != nil {
			return err
		}
	}
	epochTime := time.Since(start)

	db, err := bolt.Open(filepath.Join(dir, "raw.db"), 0o600, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	val := make([]byte, 300)
	start = time.Now()
	for i := 0; i < commits; i++ {
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("raw"))
			if err != nil {
				return err
			}
			return b.Put([]byte(fmt.Sprintf("p%d", i%500)), val)
		})
		if err != nil {
			return err
		}
	}
	rawTime := time.Since(start)
	bench("epoch_commit_throughput", commits/epochTime.Seconds(), "commits/s")
	bench("epoch_commit_latency", float64(epochTime.Microseconds())/commits, "us/commit")
	bench("bbolt_raw_commit_throughput_baseline", commits/rawTime.Seconds(), "commits/s")
	bench("epoch_commit_cost_vs_raw_bbolt", epochTime.Seconds()/rawTime.Seconds(), "ratio")
	return nil
}
