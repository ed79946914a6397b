package computeagent

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/strata-infra/strata/agent/compute"
	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
)

// fakeDriver powers instances as Set asks; stopBehind stops one as if its
// qemu were killed.
type fakeDriver struct {
	mu   sync.Mutex
	sets [][]compute.Instance
	pow  map[string]computespec.PowerState
	obs  chan struct{}
}

func newFake() *fakeDriver {
	return &fakeDriver{pow: map[string]computespec.PowerState{}, obs: make(chan struct{}, 1)}
}

func (f *fakeDriver) Set(_ context.Context, ins []compute.Instance) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets = append(f.sets, ins)
	next := map[string]computespec.PowerState{}
	for _, in := range ins {
		if in.Flavor.Name == "" {
			next[in.Spec.ID] = f.pow[in.Spec.ID] // invalid: kept, untouched
			continue
		}
		next[in.Spec.ID] = in.Spec.Power
	}
	f.pow = next
	return nil
}
func (f *fakeDriver) Observe() <-chan struct{} { return f.obs }
func (f *fakeDriver) Close() error             { return nil }
func (f *fakeDriver) Run(ctx context.Context)  { <-ctx.Done() }
func (f *fakeDriver) Status() compute.HostStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := compute.HostStatus{Connected: true, DomainType: "qemu"}
	for id, p := range f.pow {
		st.Instances = append(st.Instances, compute.InstanceStatus{ID: id, Power: p, ConsoleLog: "login:"})
	}
	return st
}
func (f *fakeDriver) stopBehind(id string) {
	f.mu.Lock()
	f.pow[id] = computespec.PowerStopped
	f.mu.Unlock()
}
func (f *fakeDriver) last() []compute.Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sets[len(f.sets)-1]
}

func res(kind, project, name string, epoch uint64, spec any) api.Resource {
	b, _ := json.Marshal(spec)
	return api.Resource{Kind: kind, Project: project, Name: name, Epoch: epoch, Spec: b}
}

func snapshot(epoch uint64, vm api.InstanceSpec, vmEpoch uint64, withPort bool) *plan.Host {
	rs := []api.Resource{
		res("flavor", "", "tiny", 1, api.FlavorSpec{VCPUs: 1, RAMMiB: 128, DiskGiB: 1}),
		res("image", "", "raw", 1, api.ImageSpec{Format: "raw", Path: "/img"}),
		res("network", "a", "net", 1, api.NetworkSpec{SegmentationID: 1005}),
		res("instance", "a", "vm", vmEpoch, vm),
		res("instance", "a", "elsewhere", 1, api.InstanceSpec{Flavor: "tiny", Image: "raw", Host: "h2"}),
	}
	if withPort {
		rs = append(rs, res("port", "a", "vm-net", 1, api.PortSpec{Network: "net", MAC: "02:5a:00:00:00:01", Host: "h1",
			Owner: api.PortOwnerCompute, FixedIPs: []api.FixedIP{{Subnet: "s", IP: "10.0.0.5"}}}))
	}
	return plan.Decode(&plan.Snapshot{Epoch: epoch, Resources: rs})
}

// fakeL2 binds every network to a bridge named after it, and refuses the
// ports in refuse.
type fakeL2 struct{ refuse map[string]bool }

func (f fakeL2) L2Binding(networkID, portID string) (network.L2Binding, error) {
	if f.refuse[portID] {
		return network.L2Binding{}, errors.New("its security groups are not in force")
	}
	return network.L2Binding{Bridge: "br-" + networkID, Type: network.L2OpenVSwitch}, nil
}

func TestPlanToDriverAndPowerSync(t *testing.T) {
	f := newFake()
	r, err := New(Config{Host: "h1", Driver: f, StateDir: t.TempDir(), L2: fakeL2{}})
	if err != nil {
		t.Fatal(err)
	}
	vm := api.InstanceSpec{Flavor: "tiny", Image: "raw", Networks: []string{"net"}, NetworkPorts: []string{"vm-net"},
		Host: "h1", Power: api.PowerRunning, UserData: "#cloud-config\n"}
	ctx := context.Background()
	if err := r.Ensure(ctx, snapshot(3, vm, 3, true)); err != nil {
		t.Fatal(err)
	}
	got := f.last()
	id := api.InstanceID("a", "vm")
	if len(got) != 1 || got[0].Spec.ID != id || got[0].Flavor.RAMMiB != 128 || got[0].Image.Path != "/img" ||
		len(got[0].Spec.Ports) != 1 || got[0].Spec.Ports[0].VNI != 1005 || got[0].Spec.Ports[0].MAC.String() != "02:5a:00:00:00:01" ||
		compute.TapName(got[0].Spec.Ports[0].ID) != compute.TapName("a.vm-net") || got[0].Spec.Ports[0].Bridge != "br-n1005" ||
		got[0].Spec.Ports[0].Switch != "openvswitch" {
		t.Fatalf("driver got %+v", got)
	}

	// Stopped behind Strata's back: reported stopped, not restarted.
	f.stopBehind(id)
	for range 2 {
		if err := r.Ensure(ctx, snapshot(4, vm, 3, true)); err != nil {
			t.Fatal(err)
		}
		if p := f.last()[0].Spec.Power; p != computespec.PowerStopped {
			t.Fatalf("a guest stopped outside Strata was asked %q", p)
		}
	}
	var rep api.HostReport
	r.Report(&rep)
	if len(rep.Resources) != 1 || rep.Resources[0].State != "stopped" || rep.Resources[0].Message != StoppedOutside || rep.Compute == nil || rep.Compute.DomainType != "qemu" {
		t.Fatalf("report %+v", rep)
	}
	var d api.InstanceDetail
	json.Unmarshal(rep.Resources[0].Detail, &d)
	if d.ID != id || len(d.Addresses) != 1 || d.Addresses[0].IPs[0] != "10.0.0.5" || d.ConsoleTail != "login:" {
		t.Fatalf("detail %+v", d)
	}
	// A restarted agent remembers; a change of the instance starts it.
	r2, err := New(Config{Host: "h1", Driver: f, StateDir: r.cfg.StateDir, L2: fakeL2{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Ensure(ctx, snapshot(4, vm, 3, true)); err != nil || f.last()[0].Spec.Power != computespec.PowerStopped {
		t.Fatalf("restarted agent restarted the guest: %v %+v", err, f.last()[0].Spec)
	}
	vm.Starts = 1
	if err := r2.Ensure(ctx, snapshot(5, vm, 5, true)); err != nil || f.last()[0].Spec.Power != computespec.PowerRunning {
		t.Fatalf("start after a change: %v %+v", err, f.last()[0].Spec)
	}

	// A port missing from the plan makes the instance invalid, not NIC-less.
	if err := r2.Ensure(ctx, snapshot(6, vm, 5, false)); err != nil {
		t.Fatal(err)
	}
	if in := f.last()[0]; in.Flavor.Name != "" || f.pow[id] != computespec.PowerRunning {
		t.Fatalf("instance with a missing port should go to the driver invalid: %+v", in)
	}
	rep = api.HostReport{}
	r2.Report(&rep)
	if !strings.Contains(rep.Resources[0].Message, `port "vm-net" is not in the plan`) {
		t.Fatalf("report %+v", rep.Resources[0])
	}

	// A port the network side refuses to plug (its filter is not in
	// force) keeps the instance from being touched, and says why.
	r2.cfg.L2 = fakeL2{refuse: map[string]bool{"a.vm-net": true}}
	if err := r2.Ensure(ctx, snapshot(7, vm, 5, true)); err != nil {
		t.Fatal(err)
	}
	rep = api.HostReport{}
	r2.Report(&rep)
	if in := f.last()[0]; in.Flavor.Name != "" || !strings.Contains(rep.Resources[0].Message, "not in force") {
		t.Fatalf("refused binding: driver got %+v, report %+v", in, rep.Resources[0])
	}
}
