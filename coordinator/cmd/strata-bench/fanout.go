package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"sync"
	"time"

	coordapi "github.com/strata-infra/strata/coordinator/api"
	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

const rounds = 30

// planFanout measures, over real HTTP on loopback, the time from a commit
// to the moment every one of N long-polling watchers holds its delta; N=1
// is the baseline the 100-watcher figure is compared with.
func planFanout(dir string) error {
	st, err := store.Open(filepath.Join(dir, "fanout.db"), store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	tok, err := coordapi.IssueToken(st, api.TokenRequest{Name: "bench", Role: api.RoleAdmin})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: coordapi.New(coordapi.Options{Store: st, Registry: registry.Default()})}
	go srv.Serve(ln)
	defer srv.Close()
	endpoint := "http://" + ln.Addr().String()

	one, err := fanoutRounds(st, endpoint, tok.Secret, 1)
	if err != nil {
		return err
	}
	hundred, err := fanoutRounds(st, endpoint, tok.Secret, 100)
	if err != nil {
		return err
	}
	bench("plan_fanout_1_watcher_median", ms(pct(one, 50)), "ms")
	bench("plan_fanout_100_watchers_median", ms(pct(hundred, 50)), "ms")
	// rounds (30) samples earn no p99: the highest one is the max.
	bench(fmt.Sprintf("plan_fanout_100_watchers_max_of_%d", len(hundred)), ms(pct(hundred, 100)), "ms")
	bench("plan_fanout_100_vs_1_watcher", float64(pct(hundred, 50))/float64(pct(one, 50)), "ratio")
	return nil
}

// fanoutRounds runs n watchers (each its own host name and connection)
// and returns, per round, commit-to-last-watcher-delivery time.
func fanoutRounds(st *store.Store, endpoint, token string, n int) ([]time.Duration, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan uint64, n*rounds)
	var wg sync.WaitGroup
	var ready sync.WaitGroup
	ready.Add(n)
	for i := 0; i < n; i++ {
		c := apiclient.New(endpoint, token)
		c.HTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
		host := fmt.Sprintf("w%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			epoch := st.Epoch()
			first := true
			for ctx.Err() == nil {
				if first {
					ready.Done()
					first = false
				}
				p, err := c.Plan(ctx, host, epoch, "", 30*time.Second)
				if err != nil {
					return
				}
				if p.Epoch > epoch {
					epoch = p.Epoch
					got <- epoch
				}
			}
		}()
	}
	ready.Wait()
	time.Sleep(200 * time.Millisecond) // let every watcher park in its long-poll
	var out []time.Duration
	spec, _ := json.Marshal(api.ProjectSpec{})
	for r := 0; r < rounds; r++ {
		start := time.Now()
		epoch, _, err := st.Update(func(tx *store.Tx) error {
			_, _, err := tx.Put(api.Resource{Kind: "project", Name: fmt.Sprintf("f%d-%d", n, r), Spec: spec})
			return err
		})
		if err != nil {
			return nil, err
		}
		for seen := 0; seen < n; {
			select {
			case e := <-got:
				if e == epoch {
					seen++
				}
			case <-time.After(10 * time.Second):
				return nil, fmt.Errorf("fan-out to %d watchers: only %d got epoch %d", n, seen, epoch)
			}
		}
		out = append(out, time.Since(start))
		time.Sleep(20 * time.Millisecond) // watchers re-park
	}
	cancel()
	wg.Wait()
	return out, nil
}

func pct(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i >= len(s) {
		i = len(s) - 1
	}
	if i > 0 && p == 50 {
		i = len(s) / 2
	}
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
