package api

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

// TestInstanceVolumes: an instance of an image in Ceph gets a root volume
// cloned from it in the same commit (deleted with it); an instance boots
// from an existing volume; volumes attach and detach by updating
// spec.volumes; a volume is never attached to two instances, and bad
// input is refused naming the field with nothing changed.
func TestInstanceVolumes(t *testing.T) {
	f := computeFixture(t)
	f.must(f.admin, "PUT", "/v1/volumetypes/default", `{"spec":{"pool":"volumes"}}`, 201)
	f.must(f.admin, "PUT", "/v1/volumetypes/cached", `{"spec":{"pool":"volumes","attach_mode":"krbd"}}`, 201)
	f.must(f.admin, "PUT", "/v1/images/tiny", `{"spec":{"format":"raw","path":"/src/tiny.raw","pool":"images","size_bytes":1610612736}}`, 201)
	for _, v := range []string{"data", "boot", "other"} {
		f.must(f.admin, "PUT", "/v1/projects/a/volumes/"+v, `{"spec":{"size_gib":1}}`, 201)
	}
	f.must(f.admin, "PUT", "/v1/projects/a/volumes/k", `{"spec":{"size_gib":1,"type":"cached"}}`, 201)

	f.must(f.admin, "PUT", "/v1/projects/a/instances/vm1", `{"spec":{"flavor":"small","image":"tiny","volumes":["data"]}}`, 201)
	s := instanceSpec(t, f, "a", "vm1")
	if s.RootVolume != "vm1-root" || !slices.Equal(s.Volumes, []string{"data"}) {
		t.Fatalf("vm1: root volume %q, volumes %v", s.RootVolume, s.Volumes)
	}
	var root api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/a/volumes/vm1-root", "", 200), &root)
	// The image is 1.5 GiB, the flavor's disk 1 GiB: the clone is 2 GiB.
	if rs := decodeSpec[api.VolumeSpec](root); rs.Image != "tiny" || rs.SizeGiB != 2 {
		t.Fatalf("root volume spec %+v", rs)
	}
	f.must(f.admin, "PUT", "/v1/projects/a/instances/vm2", `{"spec":{"flavor":"small","boot_volume":"boot"}}`, 201)

	bad := []struct{ path, body, field string }{
		{"/v1/projects/a/instances/x", `{"spec":{"flavor":"small"}}`, "spec.image"},
		{"/v1/projects/a/instances/x", `{"spec":{"flavor":"small","image":"tiny","boot_volume":"other"}}`, "spec.boot_volume"},
		{"/v1/projects/a/instances/x", `{"spec":{"flavor":"small","boot_volume":"nope"}}`, "spec.boot_volume"},
		{"/v1/projects/a/instances/x", `{"spec":{"flavor":"small","boot_volume":"boot"}}`, "spec.boot_volume"}, // vm2's
		{"/v1/projects/a/instances/x", `{"spec":{"flavor":"small","image":"cirros","volumes":["data"]}}`, "spec.volumes[0]"},
		{"/v1/projects/a/instances/x", `{"spec":{"flavor":"small","image":"cirros","volumes":["other","other"]}}`, "spec.volumes[1]"},
		{"/v1/projects/a/instances/x", `{"spec":{"flavor":"small","boot_volume":"k"}}`, "spec.boot_volume"}, // krbd: attach only
		{"/v1/projects/a/instances/x", `{"spec":{"flavor":"small","image":"cirros","root_volume":"other"}}`, "spec.root_volume"},
		{"/v1/projects/a/instances/vm2", `{"spec":{"flavor":"small","boot_volume":"boot","volumes":["boot"]}}`, "spec.volumes[0]"},
		{"/v1/projects/a/instances/vm2", `{"spec":{"flavor":"small","boot_volume":"other"}}`, "spec.boot_volume"},
		{"/v1/projects/a/instances/vm2", `{"spec":{"flavor":"small","boot_volume":"boot","volumes":["vm1-root"]}}`, "spec.volumes[0]"},
	}
	for _, b := range bad {
		before := f.must(f.admin, "GET", "/v1/projects/a/instances", "", 200)
		beforeVols := f.must(f.admin, "GET", "/v1/projects/a/volumes", "", 200)
		code, body := f.do(f.admin, "PUT", b.path, b.body)
		var eb api.ErrorBody
		json.Unmarshal(body, &eb)
		if code/100 != 4 || eb.Error == nil || eb.Error.Field != b.field {
			t.Errorf("PUT %s %s: %d %s, want 4xx naming %s", b.path, b.body, code, body, b.field)
		}
		if string(f.must(f.admin, "GET", "/v1/projects/a/instances", "", 200)) != string(before) ||
			string(f.must(f.admin, "GET", "/v1/projects/a/volumes", "", 200)) != string(beforeVols) {
			t.Errorf("PUT %s %s changed something", b.path, b.body)
		}
	}
	// An attached volume, and one an instance boots from, is not deleted.
	for _, v := range []string{"data", "boot", "vm1-root"} {
		if code, body := f.do(f.admin, "DELETE", "/v1/projects/a/volumes/"+v, ""); code != 409 {
			t.Errorf("DELETE volume %s: %d %s, want 409", v, code, body)
		}
	}
	// Hot-plug: move data from vm1 to vm2, with the krbd volume k (a
	// kernel block device on vm2's host).
	f.must(f.admin, "PUT", "/v1/projects/a/instances/vm1", `{"spec":{"flavor":"small","image":"tiny"}}`, 200)
	f.must(f.admin, "PUT", "/v1/projects/a/instances/vm2", `{"spec":{"flavor":"small","boot_volume":"boot","volumes":["data","other","k"]}}`, 200)
	if s := instanceSpec(t, f, "a", "vm2"); !slices.Equal(s.Volumes, []string{"data", "other", "k"}) {
		t.Fatalf("vm2 with the krbd volume: %+v", s)
	}
	if s := instanceSpec(t, f, "a", "vm1"); s.RootVolume != "vm1-root" || len(s.Volumes) != 0 {
		t.Fatalf("vm1 after detach: %+v", s)
	}
	// Deleting vm1 deletes its root volume in the same commit; deleting
	// vm2 leaves its volumes, detached.
	f.must(f.admin, "DELETE", "/v1/projects/a/instances/vm1", "", 200)
	f.must(f.admin, "GET", "/v1/projects/a/volumes/vm1-root", "", 404)
	f.must(f.admin, "DELETE", "/v1/projects/a/instances/vm2", "", 200)
	f.must(f.admin, "DELETE", "/v1/projects/a/volumes/data", "", 200)
	f.must(f.admin, "GET", "/v1/projects/a/volumes/boot", "", 200)
}
