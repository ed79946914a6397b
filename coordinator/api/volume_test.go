package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// TestVolumesAdmission: volume types, volumes, snapshots and images in Ceph
// through the API: what is accepted, and each bad input refused with a 4xx
// naming the field (or a 409 saying what depends on it) and nothing changed.
func TestVolumesAdmission(t *testing.T) {
	f := newFixture(t, api.Host{Name: "h1", State: api.StateAlive})
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/volumetypes/default", `{"spec":{"pool":"volumes"}}`, 201)
	f.must(f.admin, "PUT", "/v1/images/tiny", `{"spec":{"format":"raw","path":"/src/tiny.raw","pool":"images","size_bytes":2147483648}}`, 201)
	f.must(f.admin, "PUT", "/v1/images/local", `{"spec":{"format":"raw","path":"/var/lib/strata/images/l.raw"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/volumes/v1", `{"spec":{"size_gib":1}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/volumes/root", `{"spec":{"size_gib":2,"image":"tiny"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/volumesnapshots/s1", `{"spec":{"volume":"v1"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/volumes/fromsnap", `{"spec":{"size_gib":1,"snapshot":"s1"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/volumes/fromvol", `{"spec":{"size_gib":3,"volume":"v1"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/volumes/v1", `{"spec":{"size_gib":4}}`, 200) // grows

	bad := []struct{ method, path, body, field string }{
		{"PUT", "/v1/volumetypes/x", `{"spec":{"pool":"no/slash"}}`, "spec.pool"},
		{"PUT", "/v1/volumetypes/x", `{"spec":{"pool":"p","cache_mode":"writeback"}}`, "spec.cache_mode"},
		{"PUT", "/v1/volumetypes/x", `{"spec":{"pool":"p","attach_mode":"nbd"}}`, "spec.attach_mode"},
		{"PUT", "/v1/volumetypes/default", `{"spec":{"pool":"other"}}`, "spec.pool"},
		{"PUT", "/v1/images/y", `{"spec":{"format":"qcow2","path":"/y","pool":"images"}}`, "spec.format"},
		{"PUT", "/v1/projects/a/volumes/v1", `{"spec":{"size_gib":2}}`, "spec.size_gib"}, // shrink
		{"PUT", "/v1/projects/a/volumes/x", `{"spec":{"size_gib":0}}`, "spec.size_gib"},
		{"PUT", "/v1/projects/a/volumes/x", `{"spec":{"size_gib":1,"type":"gold"}}`, "spec.type"},
		{"PUT", "/v1/projects/a/volumes/x", `{"spec":{"size_gib":1,"image":"nope"}}`, "spec.image"},
		{"PUT", "/v1/projects/a/volumes/x", `{"spec":{"size_gib":1,"image":"local"}}`, "spec.image"},
		{"PUT", "/v1/projects/a/volumes/x", `{"spec":{"size_gib":1,"image":"tiny"}}`, "spec.size_gib"}, // image is 2 GiB
		{"PUT", "/v1/projects/a/volumes/x", `{"spec":{"size_gib":1,"image":"tiny","volume":"v1"}}`, "spec.image"},
		{"PUT", "/v1/projects/a/volumes/x", `{"spec":{"size_gib":1,"snapshot":"nope"}}`, "spec.snapshot"},
		{"PUT", "/v1/projects/a/volumes/x", `{"spec":{"size_gib":1,"volume":"v1"}}`, "spec.size_gib"}, // v1 is 4 GiB
		{"PUT", "/v1/projects/a/volumes/root", `{"spec":{"size_gib":2,"image":"local"}}`, "spec.image"},
		{"PUT", "/v1/projects/a/volumesnapshots/x", `{"spec":{"volume":"nope"}}`, "spec.volume"},
	}
	for _, b := range bad {
		before := f.must(f.admin, "GET", "/v1/projects/a/volumes", "", 200)
		code, body := f.do(f.admin, b.method, b.path, b.body)
		var eb api.ErrorBody
		json.Unmarshal(body, &eb)
		if code != 400 || eb.Error == nil || eb.Error.Field != b.field {
			t.Errorf("%s %s %s: %d %s, want 400 naming %s", b.method, b.path, b.body, code, body, b.field)
		}
		if after := f.must(f.admin, "GET", "/v1/projects/a/volumes", "", 200); string(after) != string(before) {
			t.Errorf("%s %s changed the volumes", b.method, b.path)
		}
	}
	// Deletes refused while something depends on the resource.
	for _, path := range []string{
		"/v1/projects/a/volumes/v1",         // has a snapshot and a clone
		"/v1/projects/a/volumesnapshots/s1", // fromsnap is cloned from it
		"/v1/images/tiny",                   // root is cloned from it
		"/v1/volumetypes/default",           // volumes use it
	} {
		if code, body := f.do(f.admin, "DELETE", path, ""); code != 409 {
			t.Errorf("DELETE %s: %d %s, want 409", path, code, body)
		}
	}
	// Marked flatten, a clone no longer holds its source.
	f.must(f.admin, "PUT", "/v1/projects/a/volumes/fromsnap", `{"spec":{"size_gib":1,"snapshot":"s1","flatten":true}}`, 200)
	if code, body := f.do(f.admin, "PUT", "/v1/projects/a/volumes/fromsnap", `{"spec":{"size_gib":1,"snapshot":"s1"}}`); code != 400 {
		t.Errorf("un-flatten: %d %s, want 400", code, body)
	}
	f.must(f.admin, "DELETE", "/v1/projects/a/volumesnapshots/s1", "", 200)
	f.must(f.admin, "PUT", "/v1/projects/a/volumes/fromvol", `{"spec":{"size_gib":3,"volume":"v1","flatten":true}}`, 200)
	f.must(f.admin, "DELETE", "/v1/projects/a/volumes/v1", "", 200)
}

// TestVolumeQuota: with the pool quota the storage controller reported
// for a volume type, a create or extend that would provision the pool
// beyond it is refused naming spec.size_gib, and nothing changes.
func TestVolumeQuota(t *testing.T) {
	f := newFixture(t, api.Host{Name: "h1", State: api.StateAlive})
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/volumetypes/default", `{"spec":{"pool":"volumes"}}`, 201)
	f.must(f.admin, "PUT", "/v1/volumetypes/other", `{"spec":{"pool":"elsewhere"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/volumes/v1", `{"spec":{"size_gib":3}}`, 201)
	var vt api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/volumetypes/default", "", 200), &vt)
	detail, _ := json.Marshal(api.PoolDetail{Pool: "volumes", QuotaMaxBytes: 5 << 30, Controller: "h1"})
	rep, _ := json.Marshal(api.HostReport{Host: "h1", AppliedEpoch: vt.Epoch, Resources: []api.ResourceReport{{
		Key: vt.Key(), ResourceStatus: api.ResourceStatus{State: "available", Epoch: vt.Epoch, Updated: time.Now(), Detail: detail}}}})
	f.must(f.admin, "POST", "/v1/hosts/h1/status", string(rep), 204)

	f.must(f.admin, "PUT", "/v1/projects/a/volumes/v2", `{"spec":{"size_gib":2}}`, 201) // 5 of 5 GiB
	for _, b := range []struct{ path, body string }{
		{"/v1/projects/a/volumes/v3", `{"spec":{"size_gib":1}}`},
		{"/v1/projects/a/volumes/v1", `{"spec":{"size_gib":4}}`},
	} {
		before := f.must(f.admin, "GET", "/v1/projects/a/volumes", "", 200)
		code, body := f.do(f.admin, "PUT", b.path, b.body)
		var eb api.ErrorBody
		json.Unmarshal(body, &eb)
		if code != 400 || eb.Error == nil || eb.Error.Field != "spec.size_gib" {
			t.Errorf("PUT %s %s over the quota: %d %s, want 400 naming spec.size_gib", b.path, b.body, code, body)
		}
		if after := f.must(f.admin, "GET", "/v1/projects/a/volumes", "", 200); string(after) != string(before) {
			t.Errorf("PUT %s over the quota changed the volumes", b.path)
		}
	}
	// Another pool has no quota; an update that does not grow passes.
	f.must(f.admin, "PUT", "/v1/projects/a/volumes/v3", `{"spec":{"size_gib":10,"type":"other"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/volumes/v1", `{"spec":{"size_gib":3,"flatten":true}}`, 200)
}

// TestVolumeShowsHostFlush: while the host that maps a krbd volume flushes
// its cache before it lets the image go (the volume detached, its instance
// deleted or moved), the volume's status is that flush, from the host's
// report: pending with the dirty blocks left, or an error naming the volume
// and the dirty count when it ran out its deadline; a delete is refused
// meanwhile, saying so. Once the host no longer reports it, the storage
// controller's status is back and the delete goes through.
func TestVolumeShowsHostFlush(t *testing.T) {
	f := newFixture(t, api.Host{Name: "h1", State: api.StateAlive}, api.Host{Name: "h2", State: api.StateAlive})
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/volumetypes/cached", `{"spec":{"pool":"volumes","attach_mode":"krbd","cache_mode":"writeback"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/volumes/v1", `{"spec":{"size_gib":1,"type":"cached"}}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/volumes/v2", `{"spec":{"size_gib":1,"type":"cached"}}`, 201)
	var v api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/a/volumes/v1", "", 200), &v)
	// h2 runs the storage controller: the volume is available in Ceph.
	rep, _ := json.Marshal(api.HostReport{Host: "h2", AppliedEpoch: f.store.Epoch(), StorageController: true, Resources: []api.ResourceReport{{
		Key: v.Key(), ResourceStatus: api.ResourceStatus{State: "available", Epoch: v.Epoch, Updated: time.Now()}}}})
	f.must(f.admin, "POST", "/v1/hosts/h2/status", string(rep), 204)
	img := "volumes/" + storagespec.VolumeImage("a", "v1")
	flush := func(fl *api.VolumeFlush) {
		rep, _ := json.Marshal(api.HostReport{Host: "h1", AppliedEpoch: f.store.Epoch(), VolumeCaches: []api.VolumeCacheReport{{
			Image: img, Mode: "writeback", Phase: "detaching", DirtyBlocks: 40, Flush: fl}}})
		f.must(f.admin, "POST", "/v1/hosts/h1/status", string(rep), 204)
	}
	get := func(name string) api.Resource {
		var r api.Resource
		json.Unmarshal(f.must(f.admin, "GET", "/v1/projects/a/volumes/"+name, "", 200), &r)
		return r
	}
	flush(&api.VolumeFlush{DirtyBlocks: 40, FirstBlocks: 100, Message: "flushes the volume's cache before it lets the image go: 40 dirty blocks left (100 when it began)"})
	if st := get("v1").Status; st == nil || st.State != api.ResourcePending || st.Host != "h1" || !strings.Contains(st.Message, "host h1 flushes") || !strings.Contains(st.Message, "40 dirty blocks left (100 when it began)") {
		t.Fatalf("status during the flush: %+v", st)
	}
	if st := get("v2").Status; st != nil && st.Host == "h1" {
		t.Errorf("another volume shows h1's flush: %+v", st)
	}
	// A delete waits for the host to let the image go, and says why.
	if code, body := f.do(f.admin, "DELETE", "/v1/projects/a/volumes/v1", ""); code != 409 || !strings.Contains(string(body), "host h1 flushes") || !strings.Contains(string(body), "40 dirty blocks left") {
		t.Errorf("delete during the flush: %d %s", code, body)
	}
	flush(&api.VolumeFlush{DirtyBlocks: 40, FirstBlocks: 100, Error: "detach " + storagespec.VolumeImage("a", "v1") + ": flush did not finish by its deadline (10m0s); 40 dirty blocks left (100 when the flush began): the volume stays mapped"})
	if st := get("v1").Status; st == nil || st.State != api.ResourceError || !strings.Contains(st.Message, "40 dirty blocks left") || !strings.Contains(st.Message, storagespec.VolumeImage("a", "v1")) {
		t.Fatalf("status after the deadline: %+v", st)
	}
	if code, body := f.do(f.admin, "DELETE", "/v1/projects/a/volumes/v1", ""); code != 409 || !strings.Contains(string(body), "could not let it go") {
		t.Errorf("delete after the flush failed: %d %s", code, body)
	}
	flush(nil) // mapped, no flush: the controller's word
	if st := get("v1").Status; st == nil || st.State != "available" || st.Host != "h2" {
		t.Fatalf("status with no flush: %+v", st)
	}
	// Let go: the delete goes through (the storage controller then
	// deletes the image once no host holds its lock).
	f.must(f.admin, "DELETE", "/v1/projects/a/volumes/v1", "", 200)
}
