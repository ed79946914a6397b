package compute

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kdomanski/iso9660"
	"github.com/strata-infra/strata/pkg/computespec"
	"libvirt.org/go/libvirtxml"
)

// fakeHV is an in-memory Hypervisor that records every change.
type fakeHV struct {
	mu    sync.Mutex
	doms  map[string]*Domain
	calls []string
}

func (f *fakeHV) Domains(context.Context) ([]Domain, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Domain
	for _, d := range f.doms {
		out = append(out, *d)
	}
	return out, nil
}

func (f *fakeHV) Define(_ context.Context, x string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := between(x, "<name>", "</name>")
	meta := between(x, "<metadata>", "</metadata>")
	f.calls = append(f.calls, "define "+name)
	if d, ok := f.doms[name]; ok {
		d.Metadata = meta
		return nil
	}
	f.doms[name] = &Domain{Name: name, State: computespec.PowerStopped, Metadata: meta}
	return nil
}

func between(s, a, b string) string {
	_, rest, _ := strings.Cut(s, a)
	v, _, _ := strings.Cut(rest, b)
	return strings.TrimSpace(v)
}

func (f *fakeHV) Do(_ context.Context, name string, a Action) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, a.String()+" "+name)
	d := f.doms[name]
	if d == nil {
		return nil
	}
	switch a {
	case ActStart:
		d.State = computespec.PowerRunning
	case ActShutdown, ActDestroy:
		d.State = computespec.PowerStopped
	case ActUndefine:
		delete(f.doms, name)
	}
	return nil
}

func (f *fakeHV) Events(ctx context.Context) <-chan string { return make(chan string) }
func (f *fakeHV) Close() error                             { return nil }

func (f *fakeHV) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func fakeInstance(t *testing.T, id string) Instance {
	img := filepath.Join(t.TempDir(), "img.raw")
	os.WriteFile(img, make([]byte, 4096), 0o644)
	return Instance{
		Spec: computespec.Instance{ID: id, Flavor: "f", Image: "i", Power: computespec.PowerRunning,
			Ports: []computespec.Port{{ID: "p-" + id, VNI: 5001, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Bridge: "sbr-5001"}}},
		Flavor: computespec.Flavor{Name: "f", VCPUs: 1, RAMMiB: 128},
		Image:  computespec.Image{ID: "i", Format: computespec.FormatRaw, Path: img},
	}
}

func newFake(t *testing.T) (*Driver, *fakeHV) {
	hv := &fakeHV{doms: map[string]*Domain{
		// Not Strata's: prefix but no metadata, and no prefix at all.
		"strata-byhand": {Name: "strata-byhand", State: computespec.PowerRunning},
		"other":         {Name: "other", State: computespec.PowerRunning, Metadata: metaXML(domainMeta{ID: "other"})},
	}}
	d, err := New(Config{Hypervisor: hv, StateDir: t.TempDir(), DomainType: DomainQEMU, ShutdownTimeout: time.Millisecond,
		Capacity: computespec.Capacity{VCPUs: 2, RAMMiB: 1024, DiskGiB: 10}})
	if err != nil {
		t.Fatal(err)
	}
	return d, hv
}

// TestSetIsIdempotentAndOwnsOnlyItsDomains replays desired states in
// several orders; every second Set of a state changes nothing, and the
// foreign domains are never acted upon.
func TestSetIsIdempotentAndOwnsOnlyItsDomains(t *testing.T) {
	d, hv := newFake(t)
	a, b := fakeInstance(t, "a"), fakeInstance(t, "b")
	bStopped := b
	bStopped.Spec.Power = computespec.PowerStopped
	aReboot := a
	aReboot.Spec.Reboots = 1
	states := [][]Instance{{a}, {a, b}, {a, bStopped}, {aReboot, b}, {}, {b}}
	for round := 0; round < 3; round++ {
		for i := range states {
			st := states[(i*(round+1))%len(states)]
			if err := d.Set(context.Background(), st); err != nil {
				t.Fatal(err)
			}
			hv.takeCalls()
			if err := d.Set(context.Background(), st); err != nil {
				t.Fatal(err)
			}
			if c := hv.takeCalls(); len(c) != 0 {
				t.Fatalf("second Set of state %d made calls %v", i, c)
			}
			for _, in := range st {
				if got := d.status(in.Spec.ID); got != in.Spec.Power {
					t.Errorf("state %d: %s is %s, want %s", i, in.Spec.ID, got, in.Spec.Power)
				}
			}
		}
	}
	d.Set(context.Background(), nil)
	for _, c := range hv.takeCalls() {
		if strings.Contains(c, "byhand") || strings.HasSuffix(c, " other") {
			t.Errorf("touched a foreign domain: %s", c)
		}
	}
	if len(hv.doms) != 2 {
		t.Errorf("domains left: %v, want only the two foreign ones", hv.doms)
	}
}

func (d *Driver) status(id string) computespec.PowerState {
	for _, s := range d.Status().Instances {
		if s.ID == id {
			return s.Power
		}
	}
	return ""
}

func TestCapacityRefusesBeforeCreating(t *testing.T) {
	d, hv := newFake(t)
	a, b := fakeInstance(t, "a"), fakeInstance(t, "b")
	b.Flavor.RAMMiB = 1000 // a's 128 + 1000 > 1024
	err := d.Set(context.Background(), []Instance{a, b})
	if err == nil || !strings.Contains(err.Error(), "flavor.ram_mib") {
		t.Fatalf("Set error %v, want flavor.ram_mib", err)
	}
	for _, c := range hv.takeCalls() {
		if strings.HasSuffix(c, "strata-b") {
			t.Errorf("refused instance got %s", c)
		}
	}
}

// TestSeedISOReadsBack builds the NoCloud ISO and reads its files back.
func TestSeedISOReadsBack(t *testing.T) {
	in := fakeInstance(t, "seeded")
	in.Spec.UserData = []byte("#cloud-config\nruncmd: [echo hi]\n")
	in.Spec.SSHKey = "ssh-ed25519 AAAAkey me@there"
	p := filepath.Join(t.TempDir(), "seed.iso")
	if err := writeSeed(p, seedFiles(in)); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	if err != nil {
		t.Fatal(err)
	}
	if label, _ := img.Label(); !strings.EqualFold(label, SeedLabel) {
		t.Errorf("label %q, want %s", label, SeedLabel)
	}
	root, err := img.RootDir()
	if err != nil {
		t.Fatal(err)
	}
	kids, err := root.GetChildren()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, k := range kids {
		b, _ := io.ReadAll(k.Reader())
		got[k.Name()] = string(b)
	}
	for name, want := range map[string]string{
		"meta-data":      "instance-id: seeded\nlocal-hostname: seeded\npublic-keys:\n  - \"ssh-ed25519 AAAAkey me@there\"\n",
		"user-data":      string(in.Spec.UserData),
		"network-config": "macaddress: \"02:00:00:00:00:01\"",
	} {
		if !strings.Contains(got[name], want) {
			t.Errorf("%s = %q, want it to contain %q (files: %v)", name, got[name], want, kids)
		}
	}
}

func TestDomainXML(t *testing.T) {
	in := fakeInstance(t, "x")
	x, err := domainXML(in, "strata-x", DomainQEMU, filesOf("/s", "x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`<domain type="qemu">`, `<source bridge="sbr-5001">`, `<mac address="02:00:00:00:00:01">`,
		`<target dev="` + TapName("p-x") + `">`, `<model type="virtio">`, `bus="virtio"`, `/s/instances/x/seed.iso`,
		`<source path="/s/instances/x/console.log" append="on">`, `xmlns:strata="` + MetadataNS + `"`,
	} {
		if !strings.Contains(x, want) {
			t.Errorf("domain XML lacks %s:\n%s", want, x)
		}
	}
	if m, ok := parseMeta(between(x, "<metadata>", "</metadata>")); !ok || m.ID != "x" || len(m.Taps) != 1 {
		t.Errorf("metadata does not parse back: %+v", m)
	}
}

// rootWait is a volume door whose root volume is not made yet until
// ready is set (the storage controller has not cloned it).
type rootWait struct{ ready bool }

func (v *rootWait) RootDisk(computespec.Volume) libvirtxml.DomainDisk {
	return libvirtxml.DomainDisk{Device: "disk", Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"}}
}
func (v *rootWait) Claim(_ context.Context, r computespec.Volume) error {
	if !v.ready {
		return fmt.Errorf("claim %s/%s: not found", r.Pool, r.Image)
	}
	return nil
}
func (v *rootWait) Set(context.Context, string, []computespec.Volume) error { return nil }
func (v *rootWait) Grow(context.Context, string, computespec.Volume) error  { return nil }
func (v *rootWait) Ready(context.Context) error                             { return nil }
func (v *rootWait) Release(context.Context, []computespec.Volume) error     { return nil }

// TestRootVolumeNotThereYetIsNoFailedBuild: a new instance whose root
// volume cannot be claimed yet keeps its defined domain (its host reports
// it stopped, not missing: the coordinator would take a missing one for a
// failed build and move it), and starts once the volume is there.
func TestRootVolumeNotThereYetIsNoFailedBuild(t *testing.T) {
	hv := &fakeHV{doms: map[string]*Domain{}}
	vols := &rootWait{}
	d, err := New(Config{Hypervisor: hv, StateDir: t.TempDir(), DomainType: DomainQEMU, ShutdownTimeout: time.Millisecond,
		Capacity: computespec.Capacity{VCPUs: 2, RAMMiB: 1024, DiskGiB: 10}, Volumes: vols})
	if err != nil {
		t.Fatal(err)
	}
	in := fakeInstance(t, "a")
	in.Spec.Root = &computespec.Volume{Pool: "volumes", Image: "volume-a-root", Serial: "root", SizeBytes: 1 << 30}
	if err := d.Set(context.Background(), []Instance{in}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("Set with the root volume missing: %v, want its claim error", err)
	}
	if got := d.status("a"); got != computespec.PowerStopped {
		t.Fatalf("instance a is %q while its root volume is missing, want stopped (defined, not removed)", got)
	}
	vols.ready = true
	if err := d.Set(context.Background(), []Instance{in}); err != nil {
		t.Fatal(err)
	}
	if got := d.status("a"); got != computespec.PowerRunning {
		t.Fatalf("instance a is %q once its root volume is there, want running", got)
	}
}

// TestDomainXMLOpenVSwitch: a NIC bound to an Open vSwitch bridge (a port
// without security groups on an ovs host) is a tap libvirt adds to the
// integration bridge: <virtualport type='openvswitch'>, no Linux bridge.
func TestDomainXMLOpenVSwitch(t *testing.T) {
	in := fakeInstance(t, "x")
	in.Spec.Ports[0].Bridge, in.Spec.Ports[0].Switch = "strata-int", computespec.SwitchOpenVSwitch
	x, err := domainXML(in, "strata-x", DomainQEMU, filesOf("/s", "x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<source bridge="strata-int">`, `<virtualport type="openvswitch">`, `<target dev="` + TapName("p-x") + `">`} {
		if !strings.Contains(x, want) {
			t.Errorf("domain XML lacks %s:\n%s", want, x)
		}
	}
	if strings.Contains(x, "csum") {
		t.Errorf("checksum offload set without FullChecksums:\n%s", x)
	}
	// On the userspace datapath the guest finishes its own checksums.
	in.Spec.Ports[0].FullChecksums = true
	if x, err = domainXML(in, "strata-x", DomainQEMU, filesOf("/s", "x"), nil); err != nil {
		t.Fatal(err)
	}
	if want := `<host csum="off"></host>`; !strings.Contains(x, want) {
		t.Errorf("domain XML with FullChecksums lacks %s:\n%s", want, x)
	}
}
