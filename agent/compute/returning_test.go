package compute

import (
	"context"
	"fmt"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/strata-infra/strata/pkg/computespec"
)

// countingVolumes is a volume door that counts every call after armed.
type countingVolumes struct {
	armed    bool
	calls    []string
	released [][]computespec.Volume
}

func (v *countingVolumes) note(call string) {
	if v.armed {
		v.calls = append(v.calls, call)
	}
}
func (v *countingVolumes) RootDisk(computespec.Volume) libvirtxml.DomainDisk {
	v.note("RootDisk")
	return libvirtxml.DomainDisk{Device: "disk", Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"}}
}
func (v *countingVolumes) Claim(context.Context, computespec.Volume) error {
	v.note("Claim")
	return nil
}
func (v *countingVolumes) Set(_ context.Context, domain string, want []computespec.Volume) error {
	if len(want) > 0 || domain != DomainName(DefaultDomainPrefix, "kept") {
		v.note("Set " + domain)
	}
	return nil
}
func (v *countingVolumes) Grow(_ context.Context, domain string, _ computespec.Volume) error {
	v.note("Grow " + domain)
	return nil
}
func (v *countingVolumes) Ready(context.Context) error { v.note("Ready"); return nil }

// Release is the host-wide pass that lets go of volumes nothing keeps; it
// is kept apart from the calls, with what it was told to keep.
func (v *countingVolumes) Release(_ context.Context, keep []computespec.Volume) error {
	v.released = append(v.released, keep)
	return nil
}

// (The kept instance, which has no volumes, is told so each pass: an empty
// Set on its own domain is not counted.)

// TestReturningHostRemovesEvacuatedDomainsOnly: a host that comes back
// after its instance on RBD was evacuated (fenced, restarted elsewhere)
// finds it gone from its plan: the domain is destroyed and undefined, the
// instance it still runs is kept, and not one call reaches the volumes
// (they belong to the instance's new host now).
func TestReturningHostRemovesEvacuatedDomainsOnly(t *testing.T) {
	hv := &fakeHV{doms: map[string]*Domain{}}
	vols := &countingVolumes{}
	d, err := New(Config{Hypervisor: hv, StateDir: t.TempDir(), DomainType: DomainQEMU, ShutdownTimeout: time.Millisecond,
		Capacity: computespec.Capacity{VCPUs: 2, RAMMiB: 1024, DiskGiB: 10}, Volumes: vols})
	if err != nil {
		t.Fatal(err)
	}
	gone, kept := fakeInstance(t, "gone"), fakeInstance(t, "kept")
	gone.Spec.Root = &computespec.Volume{Pool: "volumes", Image: "volume-gone-root", Serial: "root", SizeBytes: 1 << 30}
	gone.Spec.Volumes = []computespec.Volume{{Pool: "volumes", Image: "volume-data", Serial: "data", SizeBytes: 1 << 30}}
	ctx := context.Background()
	if err := d.Set(ctx, []Instance{gone, kept}); err != nil {
		t.Fatal(err)
	}
	hv.takeCalls()
	vols.armed = true
	if err := d.Set(ctx, []Instance{kept}); err != nil {
		t.Fatal(err)
	}
	if len(vols.calls) != 0 {
		t.Fatalf("removing the evacuated domain called the volumes: %v", vols.calls)
	}
	if got := d.status("kept"); got != computespec.PowerRunning {
		t.Fatalf("the host's own instance is %q, want running", got)
	}
	hv.mu.Lock()
	n := len(hv.doms)
	hv.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d domains left, want only the kept one (the evacuated one undefined)", n)
	}
}

// TestReleaseKeepsEveryDesiredVolume: after each pass the host lets go of
// the host-side devices (krbd mappings, caches) of exactly the volumes no
// desired instance has, root disks included, and only after the domains
// that had them are gone.
func TestReleaseKeepsEveryDesiredVolume(t *testing.T) {
	hv := &fakeHV{doms: map[string]*Domain{}}
	vols := &countingVolumes{}
	d, err := New(Config{Hypervisor: hv, StateDir: t.TempDir(), DomainType: DomainQEMU, ShutdownTimeout: time.Millisecond,
		Capacity: computespec.Capacity{VCPUs: 2, RAMMiB: 1024, DiskGiB: 10}, Volumes: vols})
	if err != nil {
		t.Fatal(err)
	}
	a, b := fakeInstance(t, "a"), fakeInstance(t, "b")
	a.Spec.Root = &computespec.Volume{Pool: "volumes", Image: "volume-a-root"}
	a.Spec.Volumes = []computespec.Volume{{Pool: "volumes", Image: "volume-k", KRBD: &computespec.KRBD{CacheMode: "writeback"}}}
	b.Spec.Volumes = []computespec.Volume{{Pool: "volumes", Image: "volume-l"}}
	ctx := context.Background()
	images := func() []string {
		var out []string
		for _, v := range vols.released[len(vols.released)-1] {
			out = append(out, v.Image)
		}
		return out
	}
	if err := d.Set(ctx, []Instance{a, b}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(images()); got != "[volume-k volume-a-root volume-l]" {
		t.Fatalf("first pass kept %s", got)
	}
	if err := d.Set(ctx, []Instance{b}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(images()); got != "[volume-l]" {
		t.Fatalf("after a is gone the pass kept %s", got)
	}
	hv.mu.Lock()
	_, aLeft := hv.doms[DomainName(DefaultDomainPrefix, "a")]
	hv.mu.Unlock()
	if aLeft {
		t.Fatal("a's domain is still there when its volumes are released")
	}
}
