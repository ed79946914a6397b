package attach_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/compute"
	"github.com/strata-infra/strata/agent/compute/virttest"
	"github.com/strata-infra/strata/agent/storage/attach"
	"github.com/strata-infra/strata/internal/cephtest"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/computespec"
	"github.com/strata-infra/strata/pkg/rbd"
)

func TestMain(m *testing.M) { cephtest.Main(m, "s13a", "volumes") }

func TestParseMonHost(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"[v2:10.0.0.1:3300,v1:10.0.0.1:6789]", "[10.0.0.1:6789]"},
		{"[v2:10.0.0.1:3300/0,v1:10.0.0.1:6789/0] [v2:10.0.0.2:3300,v1:10.0.0.2:6789]", "[10.0.0.1:6789 10.0.0.2:6789]"},
		{"10.0.0.1,10.0.0.2:6790", "[10.0.0.1:6789 10.0.0.2:6790]"},
	} {
		got, err := attach.ParseMonHost(tt.in)
		if err != nil || fmt.Sprint(got) != tt.want {
			t.Errorf("ParseMonHost(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "[v2:10.0.0.1:3300]", "mon.example"} {
		if _, err := attach.ParseMonHost(bad); err == nil {
			t.Errorf("ParseMonHost(%q) accepted", bad)
		}
	}
}

func uuid() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// cephUser is where every real-component test here starts: the package's
// cluster (and a libvirtd and qemu to be had), a cephx user of name with
// rbd rights, and a connection as it. The connection's cleanup is
// registered first, so it runs after the test's own (its image removals).
func cephUser(t *testing.T, name string) (cl *cephtest.Cluster, keyring string, conn *rbd.Conn) {
	t.Helper()
	cl = cephtest.Require(t)
	virttest.Require(t)
	if !rbd.Supported() {
		testenv.Missing(t, "go-ceph", rbd.ErrNoCeph.Error())
	}
	keyring, err := cl.CreateUser(context.Background(), "client."+name, "mon", "profile rbd", "osd", "profile rbd")
	if err != nil {
		t.Fatal(err)
	}
	conn, err = rbd.Connect(rbd.Config{MonHost: cl.MonHost(), User: name, Keyring: keyring})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return cl, keyring, conn
}

// libvirtdWith starts a private libvirtd under dir (its guests killed and
// it stopped after t) and opens the attach door to it as user.
func libvirtdWith(t *testing.T, dir string, cl *cephtest.Cluster, user, keyring string) (*virttest.Daemon, *attach.Libvirt) {
	t.Helper()
	d, err := virttest.New(dir+"/libvirt", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.KillGuests(); d.Stop() })
	mons, err := attach.ParseMonHost(cl.MonHost())
	if err != nil {
		t.Fatal(err)
	}
	lv, err := attach.New(d.Socket, attach.Client{Monitors: mons, User: user, Keyring: keyring, SecretUUID: uuid()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lv.Close() })
	return d, lv
}

// rbdGuest is the test guest run as an instance whose root disk is in
// Ceph: the agent's compute driver over a private libvirtd, with this
// package's Host as its volume door.
type rbdGuest struct {
	libvirtd *virttest.Daemon
	drv      *compute.Driver
	in       compute.Instance // vm1-<tag>, running, booting from root
	root     rbd.Ref
	console  string // the guest's serial console log
}

// newRBDGuest makes the guest's bootable root clone and the driver that
// runs it (not yet started): libvirtd reaches the cluster as the cephx
// user, the Host claims each image through claim before qemu opens it,
// and it maps krbd volumes through kernel when that is not nil. The
// driver is closed after t.
func newRBDGuest(t *testing.T, cl *cephtest.Cluster, user, keyring string, conn *rbd.Conn, tag string,
	claim attach.Claimer, kernel attach.Kernel) *rbdGuest {
	t.Helper()
	guest, root := bootableRoot(t, conn, tag)
	dir := t.TempDir()
	d, lv := libvirtdWith(t, dir, cl, user, keyring)
	host := attach.NewHost(lv, claim, nil)
	if kernel != nil {
		host.UseKernel(kernel)
	}
	drv, err := compute.New(compute.Config{
		Hypervisor: compute.NewLibvirt(d.Socket, nil), DomainPrefix: tag + "-", StateDir: dir + "/compute",
		DomainType: compute.DomainQEMU, Capacity: computespec.Capacity{VCPUs: 2, RAMMiB: 2048, DiskGiB: 10},
		ShutdownTimeout: 3 * time.Second, Volumes: host,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Close() })
	id := "vm1-" + tag
	return &rbdGuest{
		libvirtd: d,
		drv:      drv,
		root:     root,
		in: compute.Instance{
			Spec: computespec.Instance{ID: id, Name: "vm1", Flavor: "tiny", Power: computespec.PowerRunning,
				Root: &computespec.Volume{Pool: root.Pool, Image: root.Image, Serial: "root", SizeBytes: 48 << 20}},
			Flavor: computespec.Flavor{Name: "tiny", VCPUs: 1, RAMMiB: 160},
			Boot: &compute.DirectBoot{Kernel: filepath.Join(guest, "vmlinux"), Initrd: filepath.Join(guest, "initramfs.cpio.gz"),
				Cmdline: "console=ttyS0 panic=-1 quiet"},
		},
		console: filepath.Join(dir, "compute", "instances", id, "console.log"),
	}
}

// bootableRoot is rootClone grown to 48 MiB.
func bootableRoot(t *testing.T, conn *rbd.Conn, tag string) (guest string, root rbd.Ref) {
	t.Helper()
	guest, root = rootClone(t, conn, tag)
	if err := conn.Resize(root, 48<<20); err != nil {
		t.Fatal(err)
	}
	return guest, root
}

// rootClone builds the test guest and makes an instance's root disk as
// the storage controller does: the guest's image (an ext2 root
// filesystem) imported into Ceph and a copy-on-write clone of it.
func rootClone(t *testing.T, conn *rbd.Conn, tag string) (guest string, root rbd.Ref) {
	t.Helper()
	out, err := exec.Command("bash", "../../../testdata/guest/build.sh").Output()
	if err != nil {
		t.Fatalf("build the test guest: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	guest = strings.TrimSpace(lines[len(lines)-1])
	img := rbd.Ref{Pool: "volumes", Image: "s7c-" + tag + "-img"}
	root = rbd.Ref{Pool: "volumes", Image: "s7c-" + tag + "-root"}
	if _, err := conn.ImportFile(context.Background(), guest+"/root.img", "raw", img, "test", t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Remove(img, "", true) })
	if err := conn.Clone(rbd.Ref{Pool: img.Pool, Image: img.Image, Snap: rbd.BaseSnap}, root, "test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Remove(root, "", false) })
	return guest, root
}
