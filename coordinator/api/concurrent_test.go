package api

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// TestConcurrentAPICreatesKeepCapacityAndAntiAffinity races 60 instance
// creates over the API (each a real commit; the scheduler's claims are
// confirmed or released by it) against 6 hosts with room for 24, half of
// the creates in anti-affinity groups of 5: what is stored never puts a
// host over its RAM or two members of a group on one host, exactly the
// hosts' room is placed, and every refusal is a 409 saying why.
func TestConcurrentAPICreatesKeepCapacityAndAntiAffinity(t *testing.T) {
	capa := api.Capacity{VCPUs: 8, RAMMiB: 2048, DiskGiB: 40}
	var hosts []api.Host
	for i := range 6 {
		hosts = append(hosts, api.Host{Name: fmt.Sprintf("h%d", i), State: api.StateAlive, Zone: "az1", Capacity: capa})
	}
	f := newFixture(t, hosts...)
	f.must(f.admin, "PUT", "/v1/flavors/small", `{"spec":{"vcpus":1,"ram_mib":512,"disk_gib":1}}`, 201)
	f.must(f.admin, "PUT", "/v1/images/cirros", `{"spec":{"format":"qcow2","path":"/var/lib/strata/images/cirros.qcow2"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	for g := range 6 {
		f.must(f.admin, "PUT", fmt.Sprintf("/v1/projects/a/servergroups/g%d", g), `{"spec":{"policy":"anti-affinity"}}`, 201)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	var bad []string
	start := make(chan struct{})
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			group := ""
			if i%2 == 0 {
				group = fmt.Sprintf(`,"group":"g%d"`, (i/2)%6)
			}
			<-start
			code, body := f.do(f.admin, "PUT", fmt.Sprintf("/v1/projects/a/instances/vm%d", i),
				fmt.Sprintf(`{"spec":{"flavor":"small","image":"cirros"%s}}`, group))
			mu.Lock()
			defer mu.Unlock()
			codes[code]++
			if code != 201 && (code != 409 || !strings.Contains(string(body), "0 of 6 hosts: ")) {
				bad = append(bad, fmt.Sprintf("%d %s", code, body))
			}
		}()
	}
	close(start)
	wg.Wait()
	for _, b := range bad {
		t.Errorf("refusal without its reason: %s", b)
	}
	ram := map[string]int{}
	members := map[string]map[string]string{} // group -> host -> instance
	err := f.store.View(func(tx *store.Tx) error {
		rs, err := tx.List("instance", "a", false)
		for _, r := range rs {
			s := decodeSpec[api.InstanceSpec](r)
			ram[s.Host] += 512
			if s.Group == "" {
				continue
			}
			if members[s.Group] == nil {
				members[s.Group] = map[string]string{}
			}
			if other, dup := members[s.Group][s.Host]; dup {
				t.Errorf("group %s: %s and %s both on %s", s.Group, r.Name, other, s.Host)
			}
			members[s.Group][s.Host] = r.Name
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for h, used := range ram {
		total += used
		if used > capa.RAMMiB {
			t.Errorf("host %s holds %d MiB of instances, more than its %d", h, used, capa.RAMMiB)
		}
	}
	if codes[201] != 24 || total != 24*512 {
		t.Errorf("created %d (stored %d MiB), want exactly the 24 that fit; answers %v", codes[201], total, codes)
	}
	t.Logf("answers %v", codes)
}
