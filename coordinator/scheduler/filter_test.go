package scheduler

import (
	"testing"
	"time"
)

func host(name string, mut ...func(*HostState)) *HostState {
	h := &HostState{Host: Host{Name: name, Alive: true, Zone: "az1",
		Capacity: Resources{VCPUs: 4, RAMMiB: 4096, DiskGiB: 40}}}
	for _, m := range mut {
		m(h)
	}
	return h
}

func TestFilters(t *testing.T) {
	ssd := &Aggregate{Name: "fast", Hosts: []string{"h"}, Metadata: map[string]string{"disk": "ssd", "gpu": "a100, h100"}}
	small := Request{Instance: "p/i", Resources: Resources{VCPUs: 2, RAMMiB: 1024, DiskGiB: 10}}
	with := func(f func(*Request)) Request { r := small; f(&r); return r }
	tests := []struct {
		name   string
		filter Filter
		host   *HostState
		req    Request
		policy string
		onHost map[string]int
		pass   bool
		reason string
	}{
		{"alive", AliveFilter{}, host("h"), small, "", nil, true, "drained or dead"},
		{"dead", AliveFilter{}, host("h", func(h *HostState) { h.Alive = false }), small, "", nil, false, "drained or dead"},
		{"drained by agent", AliveFilter{}, host("h", func(h *HostState) { h.Drained = true }), small, "", nil, false, "drained or dead"},
		{"drained by operator", AliveFilter{}, host("h", func(h *HostState) { h.opDrained = true }), small, "", nil, false, "drained or dead"},
		{"any zone", ZoneFilter{}, host("h"), small, "", nil, true, "in another zone"},
		{"same zone", ZoneFilter{}, host("h"), with(func(r *Request) { r.Zone = "az1" }), "", nil, true, "in another zone"},
		{"other zone", ZoneFilter{}, host("h"), with(func(r *Request) { r.Zone = "az2" }), "", nil, false, "in another zone"},
		{"no extra specs", AggregateFilter{}, host("h"), small, "", nil, true, "not in an aggregate matching the flavor"},
		{"unscoped spec matches", AggregateFilter{}, host("h", func(h *HostState) { h.Aggregates = []*Aggregate{ssd} }),
			with(func(r *Request) { r.ExtraSpecs = map[string]string{"disk": "ssd"} }), "", nil, true, ""},
		{"scoped spec matches one of a list", AggregateFilter{}, host("h", func(h *HostState) { h.Aggregates = []*Aggregate{ssd} }),
			with(func(r *Request) { r.ExtraSpecs = map[string]string{"aggregate_instance_extra_specs:gpu": "h100"} }), "", nil, true, ""},
		{"spec of another scope ignored", AggregateFilter{}, host("h"),
			with(func(r *Request) { r.ExtraSpecs = map[string]string{"hw:cpu_policy": "dedicated"} }), "", nil, true, ""},
		{"spec mismatch", AggregateFilter{}, host("h", func(h *HostState) { h.Aggregates = []*Aggregate{ssd} }),
			with(func(r *Request) { r.ExtraSpecs = map[string]string{"disk": "nvme"} }), "", nil, false, "not in an aggregate matching the flavor"},
		{"spec but no aggregate", AggregateFilter{}, host("h"),
			with(func(r *Request) { r.ExtraSpecs = map[string]string{"disk": "ssd"} }), "", nil, false, "not in an aggregate matching the flavor"},
		{"image any arch", ImageFilter{}, host("h", func(h *HostState) { h.Arch = "x86_64" }), small, "", nil, true, ""},
		{"image arch matches", ImageFilter{}, host("h", func(h *HostState) { h.Arch = "x86_64"; h.Hypervisor = "qemu" }),
			with(func(r *Request) { r.Arch = "x86_64"; r.Hypervisor = "qemu" }), "", nil, true, ""},
		{"image arch differs", ImageFilter{}, host("h", func(h *HostState) { h.Arch = "x86_64" }),
			with(func(r *Request) { r.Arch = "aarch64" }), "", nil, false, "of another architecture or hypervisor than the image"},
		{"image hypervisor differs", ImageFilter{}, host("h", func(h *HostState) { h.Hypervisor = "qemu" }),
			with(func(r *Request) { r.Hypervisor = "kvm" }), "", nil, false, "of another architecture or hypervisor than the image"},
		{"physnet present", NeedsFilter{}, host("h", func(h *HostState) { h.Physnets = []string{"physnet1"} }),
			with(func(r *Request) { r.Physnets = []string{"physnet1"} }), "", nil, true, ""},
		{"physnet missing", NeedsFilter{}, host("h"),
			with(func(r *Request) { r.Physnets = []string{"physnet1"} }), "", nil, false, "without physnet physnet1"},
		{"no storage asked", StorageFilter{}, host("h"), small, "", nil, true, ""},
		{"ceph pool configured", StorageFilter{}, host("h", func(h *HostState) { h.Storage = []string{"rbd:images", "rbd:volumes"} }),
			with(func(r *Request) { r.Storage = []string{"rbd:volumes"} }), "", nil, true, ""},
		{"host without ceph", StorageFilter{}, host("h"),
			with(func(r *Request) { r.Storage = []string{"rbd:volumes"} }), "", nil, false, "not configured for Ceph pool volumes"},
		{"host with another pool only", StorageFilter{}, host("h", func(h *HostState) { h.Storage = []string{"rbd:volumes"} }),
			with(func(r *Request) { r.Storage = []string{"rbd:fast", "rbd:volumes"} }), "", nil, false, "not configured for Ceph pools fast, volumes"},
		{"other backend", StorageFilter{}, host("h", func(h *HostState) { h.Storage = []string{"rbd:volumes"} }),
			with(func(r *Request) { r.Storage = []string{"nfs:x"} }), "", nil, false, "not configured for storage nfs:x"},
		{"vcpus fit", VCPUFilter{Ratio: 1}, host("h"), small, "", nil, true, "out of vCPUs"},
		{"vcpus full", VCPUFilter{Ratio: 1}, host("h", func(h *HostState) { h.Used.VCPUs = 3 }), small, "", nil, false, "out of vCPUs"},
		{"vcpus overcommitted by ratio", VCPUFilter{Ratio: 2}, host("h", func(h *HostState) { h.Used.VCPUs = 6 }), small, "", nil, true, ""},
		{"vcpus past ratio", VCPUFilter{Ratio: 2}, host("h", func(h *HostState) { h.Used.VCPUs = 7 }), small, "", nil, false, "out of vCPUs"},
		{"vcpus by the host's announced ratio", VCPUFilter{Ratio: 1}, host("h", func(h *HostState) { h.Used.VCPUs = 6; h.Ratios.VCPU = 2 }), small, "", nil, true, ""},
		{"host's announced ratio beats config", VCPUFilter{Ratio: 16}, host("h", func(h *HostState) { h.Used.VCPUs = 4; h.Ratios.VCPU = 1 }), small, "", nil, false, "out of vCPUs"},
		{"ram by the host's announced ratio", RAMFilter{Ratio: 1}, host("h", func(h *HostState) { h.Used.RAMMiB = 5000; h.Ratios.RAM = 1.5 }), small, "", nil, true, ""},
		{"ram exactly full", RAMFilter{Ratio: 1}, host("h", func(h *HostState) { h.Used.RAMMiB = 3072 }), small, "", nil, true, ""},
		{"ram full", RAMFilter{Ratio: 1}, host("h", func(h *HostState) { h.Used.RAMMiB = 3073 }), small, "", nil, false, "out of RAM"},
		{"ram ratio 1.5", RAMFilter{Ratio: 1.5}, host("h", func(h *HostState) { h.Used.RAMMiB = 5000 }), small, "", nil, true, ""},
		{"disk full", DiskFilter{Ratio: 1}, host("h", func(h *HostState) { h.Used.DiskGiB = 31 }), small, "", nil, false, "out of disk"},
		{"disk not asked", DiskFilter{Ratio: 1}, host("h", func(h *HostState) { h.Capacity.DiskGiB = 0 }),
			with(func(r *Request) { r.Resources.DiskGiB = 0 }), "", nil, true, ""},
		{"anti-affinity empty host", GroupFilter{}, host("h"), with(func(r *Request) { r.Group = "p/web" }),
			AntiAffinity, map[string]int{"g": 1}, true, ""},
		{"anti-affinity member here", GroupFilter{}, host("h"), with(func(r *Request) { r.Group = "p/web" }),
			AntiAffinity, map[string]int{"h": 1}, false, "already holding a member of anti-affinity group web"},
		{"affinity first member", GroupFilter{}, host("h"), with(func(r *Request) { r.Group = "p/db" }), Affinity, map[string]int{}, true, ""},
		{"affinity with members here", GroupFilter{}, host("h"), with(func(r *Request) { r.Group = "p/db" }), Affinity, map[string]int{"h": 2}, true, ""},
		{"affinity members elsewhere", GroupFilter{}, host("h"), with(func(r *Request) { r.Group = "p/db" }),
			Affinity, map[string]int{"g": 1}, false, "not the host of affinity group db"},
		{"soft policy never filters", GroupFilter{}, host("h"), with(func(r *Request) { r.Group = "p/s" }), SoftAntiAffinity, map[string]int{"h": 3}, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			c := &Context{Req: &req, Policy: tt.policy, OnHost: tt.onHost, Now: time.Now()}
			if got := tt.filter.Pass(tt.host, c); got != tt.pass {
				t.Fatalf("Pass = %v, want %v", got, tt.pass)
			}
			if tt.reason != "" {
				if got := tt.filter.Reason(c); got != tt.reason {
					t.Fatalf("Reason = %q, want %q", got, tt.reason)
				}
			}
		})
	}
}

func TestWeighers(t *testing.T) {
	now := time.Now()
	idle := host("idle")
	busy := host("busy", func(h *HostState) { h.Used = Resources{VCPUs: 3, RAMMiB: 3000, DiskGiB: 10} })
	failing := host("failing", func(h *HostState) { h.Failures = []time.Time{now.Add(-2 * time.Hour), now.Add(-time.Minute), now} })
	tests := []struct {
		name    string
		w       Weigher
		policy  string
		onHost  map[string]int
		a, b    *HostState
		aHigher bool // a weighs more than b
		equal   bool
	}{
		{"ram spread prefers free RAM", RAMWeigher{Mult: 1, Ratio: 1}, "", nil, idle, busy, true, false},
		{"ram ratio counts overcommit", RAMWeigher{Mult: 1, Ratio: 2}, "", nil, idle, busy, true, false},
		{"cpu spread prefers free vCPUs", CPUWeigher{Mult: 1, Ratio: 1}, "", nil, idle, busy, true, false},
		{"soft affinity draws to members", GroupWeigher{Mult: 1}, SoftAffinity, map[string]int{"busy": 2}, busy, idle, true, false},
		{"soft anti-affinity pushes away", GroupWeigher{Mult: 1}, SoftAntiAffinity, map[string]int{"busy": 2}, idle, busy, true, false},
		{"hard policies do not weigh", GroupWeigher{Mult: 1}, AntiAffinity, map[string]int{"busy": 2}, idle, busy, false, true},
		{"failures sink a host", FailureWeigher{Mult: 1}, "", nil, idle, failing, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Context{Req: &Request{}, Policy: tt.policy, OnHost: tt.onHost, Now: now}
			a, b := tt.w.Weigh(tt.a, c), tt.w.Weigh(tt.b, c)
			if tt.equal != (a == b) || !tt.equal && (a > b) != tt.aHigher {
				t.Fatalf("weigh %s = %v, %s = %v; want first higher %v, equal %v", tt.a.Name, a, tt.b.Name, b, tt.aHigher, tt.equal)
			}
		})
	}
	if got := len(recentFailures(failing.Failures, now)); got != 2 {
		t.Fatalf("recent failures = %d, want 2 (one is older than an hour)", got)
	}
}

// TestSpreadAndPack checks the weighers' effect through Place: spread
// sends the next instance to the emptier host, pack to the fuller one.
func TestSpreadAndPack(t *testing.T) {
	for _, spread := range []bool{true, false} {
		cfg := DefaultConfig()
		cfg.Spread = spread
		s := New(cfg)
		s.SetHost(Host{Name: "a", Alive: true, Capacity: Resources{VCPUs: 8, RAMMiB: 8192, DiskGiB: 80}})
		s.SetHost(Host{Name: "b", Alive: true, Capacity: Resources{VCPUs: 8, RAMMiB: 8192, DiskGiB: 80}})
		s.Record("p/x", "a", Resources{VCPUs: 2, RAMMiB: 2048, DiskGiB: 10}, "")
		c, err := s.Place(Request{Instance: "p/y", Resources: Resources{VCPUs: 1, RAMMiB: 512}})
		if err != nil {
			t.Fatal(err)
		}
		want := map[bool]string{true: "b", false: "a"}[spread]
		if c.Host != want {
			t.Fatalf("spread=%v: placed on %s, want %s", spread, c.Host, want)
		}
	}
}

func TestFailureWeigherSinksHost(t *testing.T) {
	s := New(DefaultConfig())
	for _, n := range []string{"a", "b"} {
		s.SetHost(Host{Name: n, Alive: true, Capacity: Resources{VCPUs: 8, RAMMiB: 8192, DiskGiB: 80}})
	}
	s.BuildFailed("a")
	s.BuildFailed("a")
	for i := range 5 {
		c, err := s.Place(Request{Instance: "p/" + string(rune('a'+i)), Resources: Resources{VCPUs: 1, RAMMiB: 64}})
		if err != nil {
			t.Fatal(err)
		}
		if c.Host != "b" {
			t.Fatalf("placement %d went to %s, the host whose builds fail", i, c.Host)
		}
	}
}
