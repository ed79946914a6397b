package recovery

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-infra/strata/coordinator/membership"
	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// cluster is a store, the default kinds and a gossip view the test sets.
type cluster struct {
	t     *testing.T
	st    *store.Store
	reg   *registry.Registry
	c     *Controller
	clock time.Time

	mu    sync.Mutex
	hosts []api.Host
}

func newCluster(t *testing.T, names ...string) *cluster {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "c.db"), store.Options{RetainDeltas: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newClusterOn(t, st, names...)
}

// newClusterOn is a cluster over st (bbolt, or a coordinator's etcd store).
func newClusterOn(t *testing.T, st *store.Store, names ...string) *cluster {
	t.Helper()
	reg := registry.Default()
	if err := reg.Attach(st); err != nil {
		t.Fatal(err)
	}
	k := &cluster{t: t, st: st, reg: reg, clock: time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)}
	for _, n := range names {
		k.hosts = append(k.hosts, api.Host{Name: n, Addr: "172.30.9." + n[1:] + ":7946", State: api.StateAlive,
			StateSince: k.clock.Add(-time.Hour), Capacity: api.Capacity{VCPUs: 4, RAMMiB: 2048, DiskGiB: 20},
			Storage: []string{"rbd:volumes", "rbd:images"}})
	}
	k.sync()
	k.c = New(Config{Grace: 5 * time.Second, Retry: time.Second}, st, reg, k.view, nil, nil)
	k.c.now = func() time.Time { return k.clock }
	return k
}

func (k *cluster) view() []api.Host {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]api.Host(nil), k.hosts...)
}

func (k *cluster) sync() { k.reg.Scheduler.SetHosts(membership.SchedulerHosts(k.view())) }

func (k *cluster) setState(host, state string) {
	k.mu.Lock()
	for i := range k.hosts {
		if k.hosts[i].Name == host {
			k.hosts[i].State, k.hosts[i].StateSince = state, k.clock
		}
	}
	k.mu.Unlock()
	k.sync()
}

// put writes a resource through its kind's admission, as an admin.
func (k *cluster) put(kind, project, name string, spec any) {
	k.t.Helper()
	if _, err := k.c.write(api.Resource{Kind: kind, Project: project, Name: name}, spec, registry.Admission{}); err != nil {
		k.t.Fatalf("put %s %s/%s: %v", kind, project, name, err)
	}
}

func get[T any](k *cluster, kind, project, name string) (T, api.Resource) {
	k.t.Helper()
	var v T
	var r api.Resource
	err := k.st.View(func(tx *store.Tx) error {
		var err error
		r, err = tx.Get(api.Key{Kind: kind, Project: project, Name: name})
		return err
	})
	if err != nil {
		k.t.Fatalf("get %s %s/%s: %v", kind, project, name, err)
	}
	_ = json.Unmarshal(r.Spec, &v)
	return v, r
}

func (k *cluster) placement(project, name string) string {
	var msg string
	_ = k.st.View(func(tx *store.Tx) error {
		if p := tx.Placement(api.Key{Kind: "instance", Project: project, Name: name}); p != nil {
			msg = p.Message
		}
		return nil
	})
	return msg
}

func (k *cluster) pass() {
	k.t.Helper()
	if err := k.c.Pass(); err != nil {
		k.t.Fatalf("pass: %v", err)
	}
}

// report stores a host's report.
func (k *cluster) report(rep api.HostReport) {
	k.t.Helper()
	rep.Reported = k.clock
	if _, err := k.st.PutReport(rep, func(api.Resource) bool { return true }); err != nil {
		k.t.Fatal(err)
	}
}

// recordFence is the active storage controller (on h3) reporting the
// fence in force.
func (k *cluster) recordFence(name string) {
	_, r := get[api.FenceSpec](k, "fence", "", name)
	det, _ := json.Marshal(api.FenceDetail{FencedAt: k.clock, Controller: "h3"})
	k.report(api.HostReport{Host: "h3", Resources: []api.ResourceReport{{Key: r.Key(),
		ResourceStatus: api.ResourceStatus{State: api.FenceFenced, Epoch: r.Epoch, Updated: k.clock, Detail: det}}}})
}

// demo: a project with a network (DHCP on h1), a router on h1 with a
// gateway and a floating IP, an instance on RBD and one on a local disk,
// both on h1.
func demo(k *cluster) {
	on := func(host string) string { return host }
	k.put("flavor", "", "small", &api.FlavorSpec{VCPUs: 1, RAMMiB: 256, DiskGiB: 1})
	k.put("image", "", "tiny", &api.ImageSpec{Format: "raw", Path: "/x", Pool: "images", SizeBytes: 1 << 20})
	k.put("image", "", "local", &api.ImageSpec{Format: "raw", Path: "/var/lib/strata/images/local.raw"})
	k.put("volumetype", "", "default", &api.VolumeTypeSpec{Pool: "volumes"})
	k.put("project", "", "p", &api.ProjectSpec{})
	k.put("externalnetwork", "", "ext", &api.ExternalNetworkSpec{PhysicalNetwork: "physnet1", CIDR: "192.0.2.0/24", Gateway: "192.0.2.1"})
	k.put("network", "p", "net", &api.NetworkSpec{DHCPHost: on("h1")})
	k.put("subnet", "p", "sub", &api.SubnetSpec{Network: "net", CIDR: "10.1.1.0/24"})
	k.put("router", "p", "r", &api.RouterSpec{ExternalNetwork: "ext", Host: "h1", Interfaces: []api.RouterInterface{{Subnet: "sub"}}})
	k.put("instance", "p", "vm", &api.InstanceSpec{Flavor: "small", Image: "tiny", Networks: []string{"net"}, Host: "h1"})
	k.put("instance", "p", "disk", &api.InstanceSpec{Flavor: "small", Image: "local", Networks: []string{"net"}, Host: "h1"})
	k.put("floatingip", "p", "fip", &api.FloatingIPSpec{ExternalNetwork: "ext", Port: registry.NetworkPortName("vm", "net")})
}

// TestHostDeathFenceThenEvacuate walks the controller through one host's
// death: nothing before the grace, a fence of its Ceph and gossip
// addresses after it, nothing moved before a storage controller records
// the fence, then the RBD instance, the router (same external address,
// floating IP kept) and the DHCP server (same port) on other hosts, the
// local-disk instance left with its reason; the host's return releases
// the fence once it has applied the moves.
func TestHostDeathFenceThenEvacuate(t *testing.T) {
	k := newCluster(t, "h1", "h2", "h3")
	demo(k)
	k.report(api.HostReport{Host: "h1", Physnets: []string{"physnet1"}, Storage: &api.StorageHost{ClientAddrs: []string{"10.251.0.11:0/2212"}}})
	k.report(api.HostReport{Host: "h2", Physnets: []string{}})
	k.report(api.HostReport{Host: "h3", Physnets: []string{"physnet1"}})
	rBefore, _ := get[api.RouterSpec](k, "router", "p", "r")

	k.setState("h1", api.StateDead)
	k.clock = k.clock.Add(4 * time.Second)
	k.pass()
	if fs := k.fenceList(); len(fs) != 0 {
		t.Fatalf("fenced within the grace: %v", fs)
	}
	k.clock = k.clock.Add(2 * time.Second)
	k.pass()
	fs, fres := get[api.FenceSpec](k, "fence", "", "h1-1")
	if fs.Host != "h1" || strings.Join(fs.Addrs, ",") != "10.251.0.11,172.30.9.1" || fs.ExpirySeconds != 86400 || fs.Released {
		t.Fatalf("fence %+v", fs)
	}
	k.pass()
	if vm, _ := get[api.InstanceSpec](k, "instance", "p", "vm"); vm.Host != "h1" {
		t.Fatalf("instance moved to %s before the fence was recorded", vm.Host)
	}
	// A status at an older epoch of the fence is not a record of it.
	det, _ := json.Marshal(api.FenceDetail{FencedAt: k.clock})
	k.report(api.HostReport{Host: "h3", Resources: []api.ResourceReport{{Key: fres.Key(),
		ResourceStatus: api.ResourceStatus{State: api.FenceFenced, Epoch: fres.Epoch - 1, Updated: k.clock, Detail: det}}}})
	k.pass()
	if vm, _ := get[api.InstanceSpec](k, "instance", "p", "vm"); vm.Host != "h1" {
		t.Fatalf("instance moved on a status of another epoch of the fence: %s", vm.Host)
	}

	k.recordFence("h1-1")
	k.pass()
	vm, _ := get[api.InstanceSpec](k, "instance", "p", "vm")
	if vm.Host == "h1" || vm.Host == "" || len(vm.Evacuations) != 1 || vm.Evacuations[0].Fence != "h1-1" ||
		vm.Evacuations[0].From != "h1" || vm.Evacuations[0].To != vm.Host || !vm.Evacuations[0].FencedAt.Equal(k.clock) {
		t.Fatalf("RBD instance after the fence: host %s evacuations %+v", vm.Host, vm.Evacuations)
	}
	if msg := k.placement("p", "vm"); !strings.Contains(msg, "evacuated from h1 after fence h1-1") {
		t.Fatalf("placement status %q", msg)
	}
	port, _ := get[api.PortSpec](k, "port", "p", registry.NetworkPortName("vm", "net"))
	if port.Host != vm.Host {
		t.Fatalf("the instance's port stayed on %s", port.Host)
	}
	if d, _ := get[api.InstanceSpec](k, "instance", "p", "disk"); d.Host != "h1" {
		t.Fatalf("local-disk instance moved to %s", d.Host)
	}
	if msg := k.placement("p", "disk"); !strings.Contains(msg, "disk is local to the dead host h1") {
		t.Fatalf("local-disk instance's placement status %q", msg)
	}
	r, _ := get[api.RouterSpec](k, "router", "p", "r")
	if r.Host != "h3" || r.ExternalIP != rBefore.ExternalIP {
		t.Fatalf("router: host %s external %s (before %s); want h3 (maps physnet1), the same address", r.Host, r.ExternalIP, rBefore.ExternalIP)
	}
	rp, _ := get[api.PortSpec](k, "port", "p", api.RouterPortName("r", "sub"))
	if rp.Host != "h3" {
		t.Fatalf("router interface port on %s", rp.Host)
	}
	n, _ := get[api.NetworkSpec](k, "network", "p", "net")
	dp, _ := get[api.PortSpec](k, "port", "p", api.DHCPPortName("net"))
	if n.DHCPHost == "h1" || n.DHCPHost == "" || dp.Host != n.DHCPHost {
		t.Fatalf("DHCP: network on %q, port on %q", n.DHCPHost, dp.Host)
	}
	epoch := k.st.Epoch()
	k.pass()
	if k.st.Epoch() != epoch {
		t.Fatal("a second pass changed the store")
	}

	// h1 comes back: the fence holds until it has applied the moves.
	k.clock = k.clock.Add(time.Minute)
	k.setState("h1", api.StateAlive)
	k.report(api.HostReport{Host: "h1", AppliedEpoch: epoch - 1})
	k.pass()
	if fs, _ := get[api.FenceSpec](k, "fence", "", "h1-1"); fs.Released {
		t.Fatal("released before the host applied the moves")
	}
	k.report(api.HostReport{Host: "h1", AppliedEpoch: epoch})
	k.pass()
	if fs, _ := get[api.FenceSpec](k, "fence", "", "h1-1"); !fs.Released {
		t.Fatal("not released once the host was back and clean")
	}
}

func (k *cluster) fenceList() []string {
	var out []string
	_ = k.st.View(func(tx *store.Tx) error {
		rs, _ := tx.List("fence", "", true)
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return nil
	})
	return out
}

// TestDirtyCacheWaitsForAnOperator: an instance whose volume had dirty
// writeback blocks on the dead host stays, its placement status says how
// much; an admin's accept_data_loss lets it move.
func TestDirtyCacheWaitsForAnOperator(t *testing.T) {
	k := newCluster(t, "h1", "h2", "h3")
	demo(k)
	_, vmRes := get[api.InstanceSpec](k, "instance", "p", "vm")
	det, _ := json.Marshal(api.InstanceDetail{VolumeCache: []api.VolumeCache{{Volume: "vm-root", Mode: "writeback", DirtyBlocks: 3, DirtyBytes: 12288}}})
	k.report(api.HostReport{Host: "h1", Resources: []api.ResourceReport{{Key: vmRes.Key(),
		ResourceStatus: api.ResourceStatus{State: "running", Epoch: vmRes.Epoch, Updated: k.clock, Detail: det}}}})
	k.setState("h1", api.StateDead)
	k.clock = k.clock.Add(10 * time.Second)
	k.pass()
	k.recordFence("h1-1")
	k.pass()
	vm, _ := get[api.InstanceSpec](k, "instance", "p", "vm")
	if vm.Host != "h1" {
		t.Fatalf("moved to %s with dirty cache blocks left on the dead host", vm.Host)
	}
	if msg := k.placement("p", "vm"); !strings.Contains(msg, "3 dirty cache blocks (12288 bytes)") || !strings.Contains(msg, "--accept-data-loss") {
		t.Fatalf("placement status %q", msg)
	}
	vm.AcceptDataLoss = true
	k.put("instance", "p", "vm", &vm)
	k.clock = k.clock.Add(2 * time.Second)
	k.pass()
	if vm, _ := get[api.InstanceSpec](k, "instance", "p", "vm"); vm.Host == "h1" {
		t.Fatalf("not moved after the admin accepted the loss: %s", k.placement("p", "vm"))
	}
}

// TestDirtyKrbdCacheFromHostReport: the krbd cache's own report (the
// host's volume_caches) holds the instance back the same way.
func TestDirtyKrbdCacheFromHostReport(t *testing.T) {
	k := newCluster(t, "h1", "h2", "h3")
	demo(k)
	img := "volumes/" + storagespec.VolumeImage("p", "vm-root")
	k.report(api.HostReport{Host: "h1", VolumeCaches: []api.VolumeCacheReport{{Image: img, Mode: "writeback", DirtyBlocks: 2, DirtyBytes: 8192}}})
	k.setState("h1", api.StateDead)
	k.clock = k.clock.Add(10 * time.Second)
	k.pass()
	k.recordFence("h1-1")
	k.pass()
	if vm, _ := get[api.InstanceSpec](k, "instance", "p", "vm"); vm.Host != "h1" {
		t.Fatalf("moved to %s with dirty krbd cache blocks left on the dead host", vm.Host)
	}
	if msg := k.placement("p", "vm"); !strings.Contains(msg, "2 dirty cache blocks (8192 bytes)") {
		t.Fatalf("placement status %q", msg)
	}
}

// TestNoFenceWithoutQuorum: a coordinator that sees most hosts dead may be
// the cut-off side: it fences nobody.
func TestNoFenceWithoutQuorum(t *testing.T) {
	k := newCluster(t, "h1", "h2", "h3")
	k.setState("h1", api.StateDead)
	k.setState("h2", api.StateDead)
	k.clock = k.clock.Add(time.Minute)
	k.pass()
	if fs := k.fenceList(); len(fs) != 0 {
		t.Fatalf("fenced without quorum: %v", fs)
	}
	// A host that left on purpose (an agent stopped) is never fenced.
	k.setState("h2", api.StateLeft)
	k.clock = k.clock.Add(time.Minute)
	k.pass()
	if fs := k.fenceList(); len(fs) != 1 || fs[0] != "h1-1" {
		t.Fatalf("fences %v, want only h1-1", fs)
	}
}

// TestUnplaceableSaysWhy: with no other host that can take it, the
// instance stays and its placement status says what each filter removed.
func TestUnplaceableSaysWhy(t *testing.T) {
	k := newCluster(t, "h1", "h2", "h3")
	demo(k)
	k.put("hostconfig", "", "h2", &api.HostConfigSpec{Drained: true})
	k.put("hostconfig", "", "h3", &api.HostConfigSpec{Drained: true})
	k.setState("h1", api.StateDead)
	k.clock = k.clock.Add(10 * time.Second)
	k.pass()
	k.recordFence("h1-1")
	k.pass()
	if vm, _ := get[api.InstanceSpec](k, "instance", "p", "vm"); vm.Host != "h1" {
		t.Fatalf("moved to drained %s", vm.Host)
	}
	if msg := k.placement("p", "vm"); !strings.Contains(msg, "evacuated from h1 after fence h1-1: ") || !strings.Contains(msg, "0 of 3 hosts") {
		t.Fatalf("placement status %q", msg)
	}
}

// TestEvacuationNeedsARecordedFence: a write appending an evacuation with
// no recorded fence is refused by admission itself.
func TestEvacuationNeedsARecordedFence(t *testing.T) {
	k := newCluster(t, "h1", "h2", "h3")
	demo(k)
	vm, r := get[api.InstanceSpec](k, "instance", "p", "vm")
	vm.Evacuations = []api.Evacuation{{From: "h1", Fence: "h1-1"}}
	if _, err := k.c.write(r, &vm, registry.Admission{}); err == nil || !strings.Contains(err.Error(), "without a recorded fence") {
		t.Fatalf("evacuation without a fence: %v", err)
	}
}

// TestHeldInstanceRestartsAfterRelease: an instance held on the dead host
// (dirty cache blocks there) gets a start once the host is back clean and
// its fence is released; the released fence is pruned after the
// retention, once the storage controller lifted it, and the host's next
// fence takes the next number.
func TestHeldInstanceRestartsAfterRelease(t *testing.T) {
	k := newCluster(t, "h1", "h2", "h3")
	k.c.cfg.Retention = time.Hour
	demo(k)
	img := "volumes/" + storagespec.VolumeImage("p", "vm-root")
	k.report(api.HostReport{Host: "h1", VolumeCaches: []api.VolumeCacheReport{{Image: img, Mode: "writeback", DirtyBlocks: 2, DirtyBytes: 8192}}})
	k.setState("h1", api.StateDead)
	k.clock = k.clock.Add(10 * time.Second)
	k.pass()
	k.recordFence("h1-1")
	k.pass()
	if vm, _ := get[api.InstanceSpec](k, "instance", "p", "vm"); vm.Host != "h1" || vm.Starts != 0 {
		t.Fatalf("held instance: host %s starts %d", vm.Host, vm.Starts)
	}
	// A stopped instance on the host stays stopped.
	off, _ := get[api.InstanceSpec](k, "instance", "p", "disk")
	off.Power = api.PowerStopped
	k.put("instance", "p", "disk", &off)

	k.clock = k.clock.Add(time.Minute)
	k.setState("h1", api.StateAlive)
	k.report(api.HostReport{Host: "h1", AppliedEpoch: k.st.Epoch()})
	k.pass()
	fs, fres := get[api.FenceSpec](k, "fence", "", "h1-1")
	if !fs.Released || !fs.ReleasedAt.Equal(k.clock) {
		t.Fatalf("fence after the host came back clean: %+v", fs)
	}
	vm, _ := get[api.InstanceSpec](k, "instance", "p", "vm")
	if vm.Host != "h1" || vm.Starts != 1 {
		t.Fatalf("held instance after the release: host %s starts %d; want a start on h1", vm.Host, vm.Starts)
	}
	if msg := k.placement("p", "vm"); !strings.Contains(msg, "restarted on h1: fence h1-1 released") {
		t.Fatalf("placement status %q", msg)
	}
	if d, _ := get[api.InstanceSpec](k, "instance", "p", "disk"); d.Starts != 0 {
		t.Fatalf("a stopped instance got a start: %d", d.Starts)
	}
	epoch := k.st.Epoch()
	k.pass()
	if k.st.Epoch() != epoch {
		t.Fatal("a pass after the release changed the store again")
	}

	// Kept within the retention, and past it until the storage
	// controller has lifted the entries.
	k.clock = k.clock.Add(59 * time.Minute)
	k.pass()
	k.clock = k.clock.Add(2 * time.Minute)
	k.pass()
	if fs := k.fenceList(); len(fs) != 1 {
		t.Fatalf("fences %v: pruned before the storage controller lifted it", fs)
	}
	k.report(api.HostReport{Host: "h3", Resources: []api.ResourceReport{{Key: fres.Key(),
		ResourceStatus: api.ResourceStatus{State: api.FenceReleased, Epoch: fres.Epoch, Updated: k.clock}}}})
	k.pass()
	if fs := k.fenceList(); len(fs) != 0 {
		t.Fatalf("fences %v past the retention, lifted: want none", fs)
	}

	// A fence in force is never pruned, and numbers go on past the gaps.
	k.put("fence", "", "h2-4", &api.FenceSpec{Host: "h2", Addrs: []string{"172.30.9.2"}, Released: true, ReleasedAt: k.clock})
	_, old := get[api.FenceSpec](k, "fence", "", "h2-4")
	k.report(api.HostReport{Host: "h3", Resources: []api.ResourceReport{{Key: old.Key(),
		ResourceStatus: api.ResourceStatus{State: api.FenceReleased, Epoch: old.Epoch, Updated: k.clock}}}})
	k.setState("h2", api.StateDead)
	k.clock = k.clock.Add(10 * time.Second)
	k.pass()
	k.clock = k.clock.Add(48 * time.Hour)
	k.pass()
	if fs := k.fenceList(); strings.Join(fs, ",") != "h2-5" {
		t.Fatalf("fences %v, want h2-5 (h2-4 released and pruned)", fs)
	}
}
