package compute_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"libvirt.org/go/libvirtxml"

	"github.com/strata-infra/strata/pkg/computespec"
)

// definedXML reads a domain's persistent definition from libvirtd.
func definedXML(t *testing.T, name string) libvirtxml.Domain {
	t.Helper()
	l := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(requireEnv(t).daemon.Socket)))
	if err := l.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		t.Fatal(err)
	}
	defer l.Disconnect()
	dom, err := l.DomainLookupByName(name)
	if err != nil {
		t.Fatal(err)
	}
	x, err := l.DomainGetXMLDesc(dom, golibvirt.DomainXMLInactive)
	if err != nil {
		t.Fatal(err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestResizeStoppedInstance: a stopped instance given a larger flavor is
// redefined with its vCPUs and RAM and keeps its disk, grown to the new
// size, and stays stopped; started, the guest sees the larger disk.
func TestResizeStoppedInstance(t *testing.T) {
	d := newDriver(t, time.Second)
	in := instance("resize")
	set(t, d, in)
	sectors := func(n string) func() bool {
		return func() bool {
			return strings.Contains(d.status("resize").ConsoleLog, "strata-guest: disk vda "+n+" sectors")
		}
	}
	waitFor(t, 120*time.Second, "the guest to see its 1 GiB disk", sectors("2097152"))
	in.Spec.Power = computespec.PowerStopped
	set(t, d, in)
	waitPower(t, d, "resize", computespec.PowerStopped, 30*time.Second)

	disk := filepath.Join(d.Config().StateDir, "instances", "resize", "disk")
	before, err := os.Stat(disk)
	if err != nil {
		t.Fatalf("instance disk: %v", err)
	}
	in.Spec.Flavor = "bigger"
	in.Flavor = computespec.Flavor{Name: "bigger", VCPUs: 2, RAMMiB: 192, DiskGiB: 2}
	set(t, d, in)
	if st := d.status("resize"); st.Power != computespec.PowerStopped || st.Error != "" {
		t.Fatalf("after the resize: %+v, want stopped without error", st)
	}
	after, err := os.Stat(disk)
	if err != nil || after.Size() != 2<<30 || !os.SameFile(before, after) {
		t.Fatalf("disk after the resize: %v %v (same file %v), want the same file grown to 2 GiB", after.Size(), err, os.SameFile(before, after))
	}
	x := definedXML(t, d.status("resize").Domain)
	if x.Memory == nil || x.Memory.Value != 192*1024 || x.VCPU == nil || x.VCPU.Value != 2 {
		t.Fatalf("definition after the resize: memory %+v, vcpu %+v, want 192 MiB and 2", x.Memory, x.VCPU)
	}
	// Back to one vCPU (it boots faster under TCG), started in the same
	// pass: the definition changes first, then the guest starts.
	in.Flavor.VCPUs = 1
	in.Spec.Power = computespec.PowerRunning
	set(t, d, in)
	waitFor(t, 120*time.Second, "the guest to see its 2 GiB disk", sectors("4194304"))
	set(t, d, in) // idempotent: no redefinition, no second boot
	if n := strings.Count(d.status("resize").ConsoleLog, "strata-guest: disk vda 4194304"); n != 1 {
		t.Fatalf("second Set after the resize: %d boots with the grown disk", n)
	}
}
