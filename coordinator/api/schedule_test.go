package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

// schedFixture: four alive hosts in two zones, all on Ceph, h4 drained by
// the operator.
func schedFixture(t *testing.T) *fixture {
	t.Helper()
	capa := api.Capacity{VCPUs: 4, RAMMiB: 2048, DiskGiB: 20}
	ceph := []string{"rbd:images", "rbd:volumes"} // the pools the live-migration test boots from
	f := newFixture(t,
		api.Host{Name: "h1", State: api.StateAlive, Zone: "az1", Capacity: capa, Storage: ceph},
		api.Host{Name: "h2", State: api.StateAlive, Zone: "az1", Capacity: capa, Storage: ceph},
		api.Host{Name: "h3", State: api.StateAlive, Zone: "az2", Capacity: capa, Storage: ceph},
		api.Host{Name: "h4", State: api.StateAlive, Zone: "az2", Capacity: capa, Storage: ceph})
	f.must(f.admin, "POST", "/v1/hosts/h4/drain", `{}`, 200)
	f.must(f.admin, "PUT", "/v1/flavors/small", `{"spec":{"vcpus":1,"ram_mib":512,"disk_gib":1}}`, 201)
	f.must(f.admin, "PUT", "/v1/flavors/fast", `{"spec":{"vcpus":1,"ram_mib":512,"extra_specs":{"disk":"ssd"}}}`, 201)
	f.must(f.admin, "PUT", "/v1/images/cirros", `{"spec":{"format":"qcow2","path":"/var/lib/strata/images/cirros.qcow2"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/networks/net", `{"spec":{"dhcp_host":"h1"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/subnets/sub", `{"spec":{"network":"net","cidr":"10.1.1.0/24"}}`, 201)
	return f
}

func createVM(f *fixture, name, extra string) (int, string, api.InstanceSpec) {
	body := fmt.Sprintf(`{"spec":{"flavor":"small","image":"cirros","networks":["net"]%s}}`, extra)
	code, b := f.do(f.admin, "PUT", "/v1/projects/a/instances/"+name, body)
	var pr api.PutResult
	json.Unmarshal(b, &pr)
	return code, string(b), decodeSpec[api.InstanceSpec](pr.Resource)
}

func TestSchedulerAntiAffinityAndReasons(t *testing.T) {
	f := schedFixture(t)
	f.must(f.admin, "PUT", "/v1/projects/a/servergroups/web", `{"spec":{"policy":"anti-affinity"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/servergroups/bad", `{"spec":{"policy":"sometimes"}}`, 400)
	hosts := map[string]bool{}
	for i := range 3 {
		code, body, s := createVM(f, fmt.Sprint("web", i), `,"group":"web"`)
		if code != 201 || hosts[s.Host] {
			t.Fatalf("web%d: %d %s (hosts so far %v)", i, code, body, hosts)
		}
		hosts[s.Host] = true
	}
	before := f.store.Epoch()
	code, body, _ := createVM(f, "web3", `,"group":"web"`)
	want := "0 of 4 hosts: 1 drained or dead, 3 already holding a member of anti-affinity group web"
	if code != 409 || !strings.Contains(body, want) || !strings.Contains(body, `"field": "spec.group"`) {
		t.Fatalf("fourth member: %d %s, want 409 naming spec.group with %q", code, body, want)
	}
	if f.store.Epoch() != before {
		t.Fatal("a refused create changed the store")
	}
	if code, body, _ := createVM(f, "x", `,"group":"nope"`); code != 400 || !strings.Contains(body, "spec.group") {
		t.Fatalf("unknown group: %d %s", code, body)
	}
	f.must(f.admin, "DELETE", "/v1/projects/a/servergroups/web", "", 409)
	// A zone request and its reason.
	if code, body, s := createVM(f, "z", `,"zone":"az2"`); code != 201 || s.Host != "h3" {
		t.Fatalf("zone az2: %d %s", code, body)
	}
	code, body, _ = createVM(f, "z2", `,"zone":"az9"`)
	if code != 409 || !strings.Contains(body, "0 of 4 hosts: 1 drained or dead, 3 in another zone") || !strings.Contains(body, `"field": "spec.zone"`) {
		t.Fatalf("unknown zone: %d %s", code, body)
	}
	// A create that fails after placement (its port's network is unknown)
	// releases its claim: fill h3 (a web member, z) to one slot, then
	// fail there, then fit.
	for i := range 1 {
		if code, body, s := createVM(f, fmt.Sprint("fill", i), `,"zone":"az2"`); code != 201 || s.Host != "h3" {
			t.Fatalf("fill%d: %d %s", i, code, body)
		}
	}
	for range 3 {
		code, b := f.do(f.admin, "PUT", "/v1/projects/a/instances/bad", `{"spec":{"flavor":"small","image":"cirros","zone":"az2","networks":["nope"]}}`)
		if code != 400 {
			t.Fatalf("bad network: %d %s", code, b)
		}
	}
	if code, body, s := createVM(f, "last", `,"zone":"az2"`); code != 201 || s.Host != "h3" {
		t.Fatalf("failed creates leaked their claims: %d %s", code, body)
	}
	if code, body, _ := createVM(f, "over", `,"zone":"az2"`); code != 409 || !strings.Contains(body, "1 out of RAM") {
		t.Fatalf("h3 full: %d %s", code, body)
	}
}

func TestSchedulerAggregatesAndExtraSpecs(t *testing.T) {
	f := schedFixture(t)
	body := `{"spec":{"flavor":"fast","image":"cirros"}}`
	code, b := f.do(f.admin, "PUT", "/v1/projects/a/instances/f1", body)
	if code != 409 || !strings.Contains(string(b), "3 not in an aggregate matching the flavor") {
		t.Fatalf("no ssd aggregate yet: %d %s", code, b)
	}
	f.must(f.admin, "PUT", "/v1/aggregates/ssd", `{"spec":{"hosts":["h2"],"metadata":{"disk":"ssd"}}}`, 201)
	f.must(f.admin, "PUT", "/v1/aggregates/x", `{"spec":{"hosts":["h2","h2"]}}`, 400)
	var pr api.PutResult
	json.Unmarshal(f.must(f.admin, "PUT", "/v1/projects/a/instances/f1", body, 201), &pr)
	if s := decodeSpec[api.InstanceSpec](pr.Resource); s.Host != "h2" {
		t.Fatalf("fast flavor placed on %s, want h2 (the ssd aggregate)", s.Host)
	}
	var nt api.NewToken
	json.Unmarshal(f.must(f.admin, "POST", "/v1/tokens", `{"name":"a","role":"project","project":"a"}`, 201), &nt)
	f.must(nt.Secret, "PUT", "/v1/aggregates/mine", `{"spec":{}}`, 403)
}

func TestSchedulerResizeAndMigrate(t *testing.T) {
	f := schedFixture(t)
	f.must(f.admin, "PUT", "/v1/flavors/large", `{"spec":{"vcpus":2,"ram_mib":2048,"disk_gib":1}}`, 201)
	_, _, s := createVM(f, "vm", `,"host":"h1"`)
	put := func(s api.InstanceSpec) (int, string, api.InstanceSpec) {
		buf, _ := json.Marshal(map[string]any{"spec": s})
		code, b := f.do(f.admin, "PUT", "/v1/projects/a/instances/vm", string(buf))
		var pr api.PutResult
		json.Unmarshal(b, &pr)
		return code, string(b), decodeSpec[api.InstanceSpec](pr.Resource)
	}
	s.Migrations++
	if code, body, _ := put(s); code != 400 || !strings.Contains(body, "stop it first") {
		t.Fatalf("migrate running: %d %s", code, body)
	}
	s.Power = api.PowerStopped
	s.Migrations = 0
	if code, body, _ := put(s); code != 200 {
		t.Fatalf("stop: %d %s", code, body)
	}
	s.Migrations = 1
	code, body, got := put(s)
	if code != 200 || got.Host == "h1" || got.Host == "h4" {
		t.Fatalf("migrate: %d %s", code, body)
	}
	if p := portSpec(t, f, "a", got.NetworkPorts[0]); p.Host != got.Host {
		t.Fatalf("port stayed on %s after migration to %s", p.Host, got.Host)
	}
	// The new host has the instance: the move is done.
	hostReports(f, got.Host, "vm", "stopped", "", getInstance(t, f, "vm").Epoch)
	got = decodeSpec[api.InstanceSpec](getInstance(t, f, "vm"))
	// A flavor with a smaller disk is refused: disks never shrink.
	f.must(f.admin, "PUT", "/v1/flavors/nodisk", `{"spec":{"vcpus":1,"ram_mib":512,"disk_gib":0}}`, 201)
	s = got
	s.Flavor = "nodisk"
	if code, body, _ := put(s); code != 400 || !strings.Contains(body, "a disk never shrinks") || !strings.Contains(body, "spec.flavor") {
		t.Fatalf("resize to a smaller disk: %d %s", code, body)
	}
	// Resize to a flavor that fills a whole host: only an empty one fits.
	s = got
	s.Flavor = "large"
	code, body, got = put(s)
	if code != 200 || got.Flavor != "large" {
		t.Fatalf("resize: %d %s", code, body)
	}
	if got.Migration != nil { // it moved: the new host takes it over
		hostReports(f, got.Host, "vm", "stopped", "", getInstance(t, f, "vm").Epoch)
		got = decodeSpec[api.InstanceSpec](getInstance(t, f, "vm"))
	}
	// Admin moves it back to h1 by name; h4 is drained.
	s = got
	s.Host = "h4"
	if code, body, _ := put(s); code != 400 || !strings.Contains(body, "spec.host") {
		t.Fatalf("move to drained host: %d %s", code, body)
	}
	s.Host = "h1"
	if code, body, got := put(s); code != 200 || got.Host != "h1" {
		t.Fatalf("move to h1: %d %s", code, body)
	}
}

// TestSchedulerStorage: hosts announce the Ceph pools their agents are
// configured for. An instance booting from an image in Ceph, or with
// volumes, lands only on hosts configured for its disks' pools; when none
// is, the refusal names the pool and the field; a volume hot-plugged into
// a running instance whose host is not configured for its pool is refused
// with nothing changed. An instance on local disks goes anywhere.
func TestSchedulerStorage(t *testing.T) {
	capa := api.Capacity{VCPUs: 8, RAMMiB: 4096, DiskGiB: 20}
	f := newFixture(t,
		api.Host{Name: "h1", State: api.StateAlive, Capacity: capa, Storage: []string{"rbd:images", "rbd:volumes"}},
		api.Host{Name: "h2", State: api.StateAlive, Capacity: capa},
		api.Host{Name: "h3", State: api.StateAlive, Capacity: capa, Storage: []string{"rbd:images"}})
	f.must(f.admin, "PUT", "/v1/flavors/small", `{"spec":{"vcpus":1,"ram_mib":512,"disk_gib":1}}`, 201)
	f.must(f.admin, "PUT", "/v1/volumetypes/default", `{"spec":{"pool":"volumes"}}`, 201)
	f.must(f.admin, "PUT", "/v1/volumetypes/fast", `{"spec":{"pool":"fast"}}`, 201)
	f.must(f.admin, "PUT", "/v1/images/tiny", `{"spec":{"format":"raw","path":"/src/tiny.raw","pool":"images","size_bytes":1048576}}`, 201)
	f.must(f.admin, "PUT", "/v1/images/local", `{"spec":{"format":"raw","path":"/var/lib/strata/images/local.raw"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	for _, v := range []string{"data", "more"} {
		f.must(f.admin, "PUT", "/v1/projects/a/volumes/"+v, `{"spec":{"size_gib":1}}`, 201)
	}
	f.must(f.admin, "PUT", "/v1/projects/a/volumes/quick", `{"spec":{"size_gib":1,"type":"fast"}}`, 201)

	put := func(name, body string) (int, api.ErrorBody, api.InstanceSpec) {
		code, b := f.do(f.admin, "PUT", "/v1/projects/a/instances/"+name, body)
		var eb api.ErrorBody
		var pr api.PutResult
		json.Unmarshal(b, &eb)
		json.Unmarshal(b, &pr)
		return code, eb, decodeSpec[api.InstanceSpec](pr.Resource)
	}
	// Its root disk is a clone in pool volumes (the default type's): h1
	// only, every time; h3 has the images pool alone, h2 no Ceph.
	for i := range 4 {
		code, eb, s := put(fmt.Sprintf("rbd%d", i), `{"spec":{"flavor":"small","image":"tiny"}}`)
		if code != 201 || s.Host != "h1" {
			t.Fatalf("instance rbd%d of an image in Ceph: %d %+v on %q, want 201 on h1", i, code, eb.Error, s.Host)
		}
	}
	hosts := map[string]bool{}
	for i := range 12 {
		code, eb, s := put(fmt.Sprintf("loc%d", i), `{"spec":{"flavor":"small","image":"local"}}`)
		if code != 201 {
			t.Fatalf("instance on a local disk: %d %+v", code, eb.Error)
		}
		hosts[s.Host] = true
	}
	if !hosts["h2"] {
		t.Errorf("12 instances on local disks never went to h2 (no Ceph): %v", hosts)
	}

	before := f.must(f.admin, "GET", "/v1/projects/a/instances", "", 200)
	code, eb, _ := put("x", `{"spec":{"flavor":"small","image":"local","volumes":["quick"]}}`)
	if code != 409 || eb.Error == nil || eb.Error.Field != "spec.volumes" ||
		!strings.Contains(eb.Error.Message, "3 not configured for Ceph pool fast") {
		t.Fatalf("instance with a volume in pool fast, which no host has: %d %+v; want 409 naming spec.volumes and the pool", code, eb.Error)
	}
	t.Logf("refused: %s", eb.Error.Message)
	if string(f.must(f.admin, "GET", "/v1/projects/a/instances", "", 200)) != string(before) {
		t.Fatal("the refused create changed something")
	}
	code, eb, _ = put("y", `{"spec":{"flavor":"small","boot_volume":"quick","host":"h1"}}`)
	if code/100 != 4 || eb.Error == nil || !strings.Contains(eb.Error.Message, "not configured for Ceph pool fast") {
		t.Fatalf("boot volume in pool fast on h1: %d %+v", code, eb.Error)
	}

	// Hot-plug where the instance runs: h1 reaches pool volumes, h2 not.
	code, eb, s := put("onh2", `{"spec":{"flavor":"small","image":"local","host":"h2"}}`)
	if code != 201 || s.Host != "h2" {
		t.Fatalf("instance on h2: %d %+v", code, eb.Error)
	}
	before = f.must(f.admin, "GET", "/v1/projects/a/instances", "", 200)
	code, eb, _ = put("onh2", `{"spec":{"flavor":"small","image":"local","volumes":["data"]}}`)
	if code != 409 || eb.Error == nil || eb.Error.Field != "spec.volumes[0]" || !strings.Contains(eb.Error.Message, "host h2") {
		t.Fatalf("attach a volume of pool volumes on h2: %d %+v; want 409 naming spec.volumes[0] and the host", code, eb.Error)
	}
	if string(f.must(f.admin, "GET", "/v1/projects/a/instances", "", 200)) != string(before) {
		t.Fatal("the refused attach changed something")
	}
	if code, eb, _ := put("rbd0", `{"spec":{"flavor":"small","image":"tiny","volumes":["data","more"]}}`); code != 200 {
		t.Fatalf("attach volumes of pool volumes on h1: %d %+v", code, eb.Error)
	}
}
