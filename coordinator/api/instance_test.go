package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

func instanceSpec(t *testing.T, f *fixture, project, name string) api.InstanceSpec {
	t.Helper()
	var r api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/"+project+"/instances/"+name, "", 200), &r)
	return decodeSpec[api.InstanceSpec](r)
}

// computeFixture has hosts h1 (1000 MiB), h2 (2000 MiB), both configured
// for Ceph pools images and volumes, a drained h3 (8000 MiB) and a dead
// h4, flavor "small" (600 MiB), image "cirros" and
// project a with network net and subnet sub.
func computeFixture(t *testing.T) *fixture {
	t.Helper()
	capa := func(ram int) api.Capacity { return api.Capacity{VCPUs: 8, RAMMiB: ram, DiskGiB: 100} }
	ceph := []string{"rbd:images", "rbd:volumes"}
	f := newFixture(t,
		api.Host{Name: "h1", State: api.StateAlive, Capacity: capa(1000), Storage: ceph},
		api.Host{Name: "h2", State: api.StateAlive, Capacity: capa(2000), Storage: ceph},
		api.Host{Name: "h3", State: api.StateAlive, Capacity: capa(8000), Drained: true},
		api.Host{Name: "h4", State: api.StateDead, Capacity: capa(8000)})
	f.must(f.admin, "PUT", "/v1/flavors/small", `{"spec":{"vcpus":1,"ram_mib":600,"disk_gib":1}}`, 201)
	f.must(f.admin, "PUT", "/v1/images/cirros", `{"spec":{"format":"qcow2","path":"/var/lib/strata/images/cirros.qcow2"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/networks/net", `{"spec":{"dhcp_host":"h1"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/subnets/sub", `{"spec":{"network":"net","cidr":"10.1.1.0/24"}}`, 201)
	return f
}

func TestFlavorsAndImages(t *testing.T) {
	f := computeFixture(t)
	var nt api.NewToken
	json.Unmarshal(f.must(f.admin, "POST", "/v1/tokens", `{"name":"a","role":"project","project":"a"}`, 201), &nt)
	// Public read, admin write.
	f.must(nt.Secret, "GET", "/v1/flavors/small", "", 200)
	f.must(nt.Secret, "GET", "/v1/images", "", 200)
	f.must(nt.Secret, "PUT", "/v1/flavors/big", `{"spec":{"vcpus":2,"ram_mib":2048}}`, 403)
	f.must(nt.Secret, "DELETE", "/v1/images/cirros", "", 403)
	bad := []struct{ path, body, field string }{
		{"/v1/flavors/x", `{"spec":{"vcpus":0,"ram_mib":512}}`, "spec.vcpus"},
		{"/v1/flavors/x", `{"spec":{"vcpus":1,"ram_mib":32}}`, "spec.ram_mib"},
		{"/v1/flavors/x", `{"spec":{"vcpus":1,"ram_mib":64,"extra_specs":{"a b":"c"}}}`, "spec.extra_specs"},
		{"/v1/images/x", `{"spec":{"format":"vmdk","path":"/i"}}`, "spec.format"},
		{"/v1/images/x", `{"spec":{"format":"raw","path":"i.raw"}}`, "spec.path"},
		{"/v1/images/" + strings.Repeat("i", 41), `{"spec":{"format":"raw","path":"/i"}}`, "name"},
	}
	for _, b := range bad {
		code, body := f.do(f.admin, "PUT", b.path, b.body)
		var eb api.ErrorBody
		json.Unmarshal(body, &eb)
		if code != 400 || eb.Error == nil || eb.Error.Field != b.field {
			t.Errorf("PUT %s %s: %d %s, want 400 naming %s", b.path, b.body, code, body, b.field)
		}
	}
}

func TestInstancePlacementPortsAndLifecycle(t *testing.T) {
	f := computeFixture(t)
	var pr api.PutResult
	// Most free RAM first, counting what is already placed: h2, h2, h1, h2.
	want := []string{"h2", "h2", "h1", "h2"}
	for i, h := range want {
		body := `{"spec":{"flavor":"small","image":"cirros","networks":["net"],"user_data":"#cloud-config\n","ssh_key":"ssh-ed25519 AAAA k"}}`
		json.Unmarshal(f.must(f.admin, "PUT", fmt.Sprintf("/v1/projects/a/instances/vm%d", i), body, 201), &pr)
		s := decodeSpec[api.InstanceSpec](pr.Resource)
		if s.Host != h || s.Power != api.PowerRunning || len(s.NetworkPorts) != 1 || s.NetworkPorts[0] != fmt.Sprintf("vm%d-net", i) {
			t.Fatalf("vm%d: %+v, want host %s, running, one network port", i, s, h)
		}
		p := portSpec(t, f, "a", s.NetworkPorts[0])
		if p.Owner != api.PortOwnerCompute || p.Host != h || p.MAC == "" || len(p.FixedIPs) != 1 || p.DNSName != fmt.Sprintf("vm%d", i) {
			t.Fatalf("vm%d port %+v", i, p)
		}
	}
	// Full: h1 400 MiB free, h2 200; the drained and the dead host are not used.
	before := f.store.Epoch()
	code, body := f.do(f.admin, "PUT", "/v1/projects/a/instances/vm9", `{"spec":{"flavor":"small","image":"cirros","networks":["net"]}}`)
	var eb api.ErrorBody
	json.Unmarshal(body, &eb)
	if code != 409 || eb.Error == nil || eb.Error.Field != "spec.flavor" {
		t.Fatalf("full cluster: %d %s, want 409 naming spec.flavor", code, body)
	}
	f.must(f.admin, "GET", "/v1/projects/a/ports/vm9-net", "", 404)
	if f.store.Epoch() != before {
		t.Fatalf("refused create moved the epoch")
	}

	// The plan of an instance goes to its host only; flavors and images everywhere.
	inPlan := func(host, kind, name string) bool {
		var p api.Plan
		json.Unmarshal(f.must(f.admin, "GET", "/v1/hosts/"+host+"/plan", "", 200), &p)
		for _, r := range p.Resources {
			if r.Kind == kind && r.Name == name {
				return true
			}
		}
		return false
	}
	if !inPlan("h1", "instance", "vm2") || inPlan("h2", "instance", "vm2") || !inPlan("h1", "flavor", "small") || !inPlan("h3", "image", "cirros") {
		t.Fatalf("instance vm2 should be in h1's plan only; flavors and images in every plan")
	}

	// Stop, then re-apply the user's spec without power: the spec is
	// applied as given (power takes its default, running); only what the
	// coordinator assigned is kept, and the answer says which.
	f.must(f.admin, "PUT", "/v1/projects/a/instances/vm0", `{"spec":{"flavor":"small","image":"cirros","networks":["net"],"power":"stopped","user_data":"#cloud-config\n","ssh_key":"ssh-ed25519 AAAA k"}}`, 200)
	json.Unmarshal(f.must(f.admin, "PUT", "/v1/projects/a/instances/vm0", `{"spec":{"flavor":"small","image":"cirros","networks":["net"],"user_data":"#cloud-config\n","ssh_key":"ssh-ed25519 AAAA k"}}`, 200), &pr)
	if s := decodeSpec[api.InstanceSpec](pr.Resource); !pr.Changed || s.Power != api.PowerRunning || s.Host != "h2" ||
		strings.Join(pr.Kept, ",") != "spec.host,spec.network_ports" {
		t.Fatalf("re-apply: changed %v kept %v spec %+v", pr.Changed, pr.Kept, s)
	}
	s := instanceSpec(t, f, "a", "vm0")
	s.Power, s.Reboots, s.Starts = api.PowerRunning, 1, 1
	buf, _ := json.Marshal(map[string]any{"spec": s})
	json.Unmarshal(f.must(f.admin, "PUT", "/v1/projects/a/instances/vm0", string(buf), 200), &pr)
	if got := decodeSpec[api.InstanceSpec](pr.Resource); !pr.Changed || got.Reboots != 1 || got.Starts != 1 || got.Power != api.PowerRunning {
		t.Fatalf("start+reboot: %+v", got)
	}

	// Status from the host's report comes back on GET.
	rep := `{"resources":[{"kind":"instance","project":"a","name":"vm0","state":"running","detail":{"id":"x","power":"running","console_tail":"login:"}}]}`
	f.must(f.admin, "POST", "/v1/hosts/h2/status", rep, 204)
	var got api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/a/instances/vm0", "", 200), &got)
	if got.Status == nil || got.Status.Host != "h2" || got.Status.State != "running" || !strings.Contains(string(got.Status.Detail), "login:") {
		t.Fatalf("status %+v", got.Status)
	}

	// In-use ports and flavors stay; deleting the instance takes its port.
	f.must(f.admin, "DELETE", "/v1/projects/a/ports/vm0-net", "", 409)
	f.must(f.admin, "DELETE", "/v1/flavors/small", "", 409)
	f.must(f.admin, "PUT", "/v1/flavors/small", `{"spec":{"vcpus":1,"ram_mib":700,"disk_gib":1}}`, 409)
	f.must(f.admin, "DELETE", "/v1/projects/a/instances/vm0", "", 200)
	f.must(f.admin, "GET", "/v1/projects/a/ports/vm0-net", "", 404)
}

func TestInstanceOwnPortAndAdminHost(t *testing.T) {
	f := computeFixture(t)
	f.must(f.admin, "PUT", "/v1/projects/a/ports/mine", `{"spec":{"network":"net"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/instances/vm", `{"spec":{"flavor":"small","image":"cirros","ports":["mine"],"host":"h1"}}`, 201)
	if p := portSpec(t, f, "a", "mine"); p.Host != "h1" || p.Owner != api.PortOwnerCompute {
		t.Fatalf("bound port %+v", p)
	}
	f.must(f.admin, "PUT", "/v1/projects/a/instances/vm2", `{"spec":{"flavor":"small","image":"cirros","ports":["mine"]}}`, 409)
	f.must(f.admin, "DELETE", "/v1/projects/a/instances/vm", "", 200)
	if p := portSpec(t, f, "a", "mine"); p.Host != "" || p.Owner != "" {
		t.Fatalf("port not unbound after delete: %+v", p)
	}
	// A project token may not choose the host.
	var nt api.NewToken
	json.Unmarshal(f.must(f.admin, "POST", "/v1/tokens", `{"name":"a","role":"project","project":"a"}`, 201), &nt)
	f.must(nt.Secret, "PUT", "/v1/projects/a/instances/vm3", `{"spec":{"flavor":"small","image":"cirros","host":"h1"}}`, 403)
	f.must(nt.Secret, "PUT", "/v1/projects/a/instances/vm3", `{"spec":{"flavor":"small","image":"cirros"}}`, 201)
}

// TestInstanceBadInputChangesNothing: unknown flavor or image, RAM above
// every host's capacity, user data over 64 KiB and the like are refused
// with the field named, before anything (ports included) is created.
func TestInstanceBadInputChangesNothing(t *testing.T) {
	f := computeFixture(t)
	f.must(f.admin, "PUT", "/v1/flavors/huge", `{"spec":{"vcpus":1,"ram_mib":4096}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/instances/ok", `{"spec":{"flavor":"small","image":"cirros"}}`, 201)
	big := strings.Repeat("x", 64<<10+1)
	bad := []struct {
		name, path, body, field string
		code                    int
	}{
		{"unknown flavor", "/v1/projects/a/instances/vm", `{"spec":{"flavor":"nope","image":"cirros","networks":["net"]}}`, "spec.flavor", 400},
		{"unknown image", "/v1/projects/a/instances/vm", `{"spec":{"flavor":"small","image":"nope","networks":["net"]}}`, "spec.image", 400},
		{"ram above every host", "/v1/projects/a/instances/vm", `{"spec":{"flavor":"huge","image":"cirros","networks":["net"]}}`, "spec.flavor", 400},
		{"user data over 64 KiB", "/v1/projects/a/instances/vm", `{"spec":{"flavor":"small","image":"cirros","networks":["net"],"user_data":"` + big + `"}}`, "spec.user_data", 400},
		{"unknown network", "/v1/projects/a/instances/vm", `{"spec":{"flavor":"small","image":"cirros","networks":["nope"]}}`, "spec.networks[0]", 400},
		{"unknown port", "/v1/projects/a/instances/vm", `{"spec":{"flavor":"small","image":"cirros","ports":["nope"]}}`, "spec.ports[0]", 400},
		{"network twice", "/v1/projects/a/instances/vm", `{"spec":{"flavor":"small","image":"cirros","networks":["net","net"]}}`, "spec.networks[1]", 400},
		{"bad power", "/v1/projects/a/instances/vm", `{"spec":{"flavor":"small","image":"cirros","power":"paused"}}`, "spec.power", 400},
		{"bad ssh key", "/v1/projects/a/instances/vm", `{"spec":{"flavor":"small","image":"cirros","ssh_key":"nokey"}}`, "spec.ssh_key", 400},
		{"unknown host", "/v1/projects/a/instances/vm", `{"spec":{"flavor":"small","image":"cirros","host":"h9"}}`, "spec.host", 400},
		{"drained host", "/v1/projects/a/instances/vm", `{"spec":{"flavor":"small","image":"cirros","host":"h3"}}`, "spec.host", 400},
		{"coordinator's field", "/v1/projects/a/instances/vm", `{"spec":{"flavor":"small","image":"cirros","network_ports":["x"]}}`, "spec.network_ports", 400},
		{"flavor change", "/v1/projects/a/instances/ok", `{"spec":{"flavor":"huge","image":"cirros"}}`, "spec.flavor", 400},
		{"host change", "/v1/projects/a/instances/ok", `{"spec":{"flavor":"small","image":"cirros","host":"h1"}}`, "spec.host", 400},
		{"reboots down", "/v1/projects/a/instances/ok", `{"spec":{"flavor":"small","image":"cirros","reboots":0}}`, "", 200},
	}
	s := instanceSpec(t, f, "a", "ok")
	if s.Host != "h2" {
		t.Fatalf("ok placed on %q, want h2", s.Host)
	}
	before := f.store.Epoch()
	var ports0 []api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/a/ports", "", 200), &ports0)
	for _, c := range bad {
		code, body := f.do(f.admin, "PUT", c.path, c.body)
		var eb api.ErrorBody
		json.Unmarshal(body, &eb)
		if code != c.code || (c.field != "" && (eb.Error == nil || eb.Error.Field != c.field)) {
			t.Errorf("%s: %d %s, want %d naming %q", c.name, code, body, c.code, c.field)
		}
	}
	f.must(f.admin, "GET", "/v1/projects/a/instances/vm", "", 404)
	var ports1 []api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/a/ports", "", 200), &ports1)
	if f.store.Epoch() != before || len(ports1) != len(ports0) {
		t.Fatalf("refused input changed state: epoch %d -> %d, ports %d -> %d", before, f.store.Epoch(), len(ports0), len(ports1))
	}
	// Reboots never go down.
	f.must(f.admin, "PUT", "/v1/projects/a/instances/ok", `{"spec":{"flavor":"small","image":"cirros","reboots":2}}`, 200)
	code, body := f.do(f.admin, "PUT", "/v1/projects/a/instances/ok", `{"spec":{"flavor":"small","image":"cirros","reboots":1}}`)
	if code != 400 || !strings.Contains(string(body), "spec.reboots") {
		t.Fatalf("reboots down: %d %s", code, body)
	}
}
