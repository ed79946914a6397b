package compute

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/coordinator/membership"
	"github.com/strata-infra/strata/coordinator/scheduler"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
	"github.com/strata-infra/strata/pkg/gossip"
)

// TestAgentAdmitsWhatTheSchedulerPlaces follows the capacity contract end
// to end: the host's capacity and allocation ratios go into its gossip
// meta (encoded and decoded as the pool carries them), the coordinator's
// view turns them into a scheduler host, the scheduler (whose own
// configured ratios differ) places one-vCPU instances until it refuses,
// and the agent's driver, at the same ratios, admits exactly those and
// refuses the next one on the same field.
func TestAgentAdmitsWhatTheSchedulerPlaces(t *testing.T) {
	host := computespec.Capacity{VCPUs: 2, RAMMiB: 1024, DiskGiB: 100}
	for _, r := range []computespec.Ratios{computespec.DefaultRatios(), {VCPU: 2.5, RAM: 1, Disk: 1}, {VCPU: 16, RAM: 0.5, Disk: 1}} {
		t.Run(fmt.Sprintf("vcpu%g_ram%g", r.VCPU, r.RAM), func(t *testing.T) {
			buf, err := gossip.Meta{Role: gossip.RoleAgent, VCPUs: uint32(host.VCPUs), RAMMiB: uint64(host.RAMMiB),
				DiskGiB: uint64(host.DiskGiB), Ratios: r}.Encode()
			if err != nil {
				t.Fatal(err)
			}
			meta, err := gossip.DecodeMeta(buf)
			if err != nil {
				t.Fatal(err)
			}
			peer := gossip.Peer{Name: "h1", Addr: netip.MustParseAddrPort("192.0.2.1:7946"), State: gossip.StateAlive, Meta: meta}
			cfg := scheduler.DefaultConfig()
			cfg.Ratios = computespec.Ratios{VCPU: 100, RAM: 100, Disk: 100} // must not apply: the host announces its own
			s := scheduler.New(cfg)
			s.SetHosts(membership.SchedulerHosts([]api.Host{membership.HostFromPeer(peer)}))
			flavor := computespec.Flavor{Name: "f", VCPUs: 1, RAMMiB: 64, DiskGiB: 1}
			placed := 0
			var refusal error
			for i := range 1000 {
				req := scheduler.Request{Instance: fmt.Sprintf("p/vm%d", i), Resources: flavor.Resources()}
				c, err := s.Place(req)
				if err != nil {
					refusal = err
					break
				}
				s.Record(req.Instance, c.Host, req.Resources, "")
				placed++
			}
			if placed == 0 || placed == 1000 || refusal == nil {
				t.Fatalf("scheduler placed %d (refusal %v), want a bounded count", placed, refusal)
			}

			d, err := New(Config{Hypervisor: &fakeHV{doms: map[string]*Domain{}}, StateDir: t.TempDir(), DomainType: DomainQEMU,
				ShutdownTimeout: time.Millisecond, Capacity: host, Ratios: r})
			if err != nil {
				t.Fatal(err)
			}
			var want []Instance
			for i := range placed + 1 {
				in := fakeInstance(t, fmt.Sprintf("vm%d", i))
				in.Flavor = flavor
				want = append(want, in)
			}
			err = d.Set(context.Background(), want)
			got := 0
			for _, st := range d.Status().Instances {
				if st.Error == "" && st.Power == computespec.PowerRunning {
					got++
				}
			}
			if got != placed {
				t.Fatalf("agent admitted %d, scheduler placed %d (Set: %v)", got, placed, err)
			}
			field := "flavor.vcpus"
			if strings.Contains(refusal.Error(), "RAM") {
				field = "flavor.ram_mib"
			}
			if err == nil || !strings.Contains(err.Error(), field) {
				t.Fatalf("agent's refusal of instance %d: %v, want one on %s (scheduler: %v)", placed, err, field, refusal)
			}
		})
	}
}
