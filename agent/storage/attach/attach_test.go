package attach_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"

	"github.com/strata-infra/strata/agent/compute/virttest"
	"github.com/strata-infra/strata/agent/storage/attach"
	"github.com/strata-infra/strata/agent/storage/cephtest"
	"github.com/strata-infra/strata/internal/testenv"
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

// TestHotPlugRBDVolumes boots the TCG test guest under a private libvirtd
// from a copy-on-write RBD clone (a librbd network disk with a cephx
// secret held by libvirt) and hot-plugs RBD volumes into it: qemu opens
// them (a watcher in Ceph), an online extend reaches qemu, a swap detaches
// one and attaches another, and the persistent definition follows.
func TestHotPlugRBDVolumes(t *testing.T) {
	cl := cephtest.Require(t)
	virttest.Require(t)
	if !rbd.Supported {
		testenv.Missing(t, "go-ceph", rbd.ErrNoCeph.Error())
	}
	ctx := context.Background()
	keyring, err := cl.CreateUser(ctx, "client.strata", "mon", "profile rbd", "osd", "profile rbd")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := rbd.Connect(rbd.Config{MonHost: cl.MonHost(), User: "strata", Keyring: keyring})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close) // registered first: runs after the removals
	tag := fmt.Sprintf("s13-%d", os.Getpid())
	v1 := rbd.Ref{Pool: "volumes", Image: tag + "-v1"}
	v2 := rbd.Ref{Pool: "volumes", Image: tag + "-v2"}
	for _, v := range []rbd.Ref{v1, v2} {
		if err := conn.Create(v, 64<<20, "test"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Remove(v, "", false) })
	}

	out, err := exec.Command("bash", "../../../testdata/guest/build.sh").Output()
	if err != nil {
		t.Fatalf("build the test guest: %v", err)
	}
	// The directory is the last line (a rebuild may print more).
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	guest := strings.TrimSpace(lines[len(lines)-1])

	// The guest's image (an ext2 root filesystem) imported into Ceph, and
	// the root disk a copy-on-write clone of it, as an instance boots from.
	img := rbd.Ref{Pool: "volumes", Image: tag + "-img"}
	root := rbd.Ref{Pool: "volumes", Image: tag + "-root"}
	if _, err := conn.ImportFile(ctx, guest+"/root.img", "raw", img, "test", t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Remove(img, "", true) })
	if err := conn.Clone(rbd.Ref{Pool: img.Pool, Image: img.Image, Snap: rbd.BaseSnap}, root, "test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Remove(root, "", false) })
	if err := conn.Resize(root, 48<<20); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d, err := virttest.New(dir+"/libvirt", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.KillGuests(); d.Stop() })
	var l *golibvirt.Libvirt
	testenv.WaitFor(t, 60*time.Second, "libvirtd to accept a connection", func() error {
		l = golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(d.Socket), dialers.WithLocalTimeout(5*time.Second)))
		return l.ConnectToURI(golibvirt.QEMUSystem)
	})
	t.Cleanup(func() { l.Disconnect() })

	mons, err := attach.ParseMonHost(cl.MonHost())
	if err != nil {
		t.Fatal(err)
	}
	a, err := attach.New(d.Socket, attach.Client{Monitors: mons, User: "strata", Keyring: keyring, SecretUUID: uuid()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.EnsureSecret(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.EnsureSecret(ctx); err != nil {
		t.Fatalf("second EnsureSecret: %v", err)
	}
	rootDisk := a.DiskXML(attach.Volume{Pool: root.Pool, Image: root.Image, Serial: "root"}, "vda")
	rootXML, err := rootDisk.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	name := tag + "-dom"
	console := dir + "/console.log"
	// The test guest's kernel boots directly; its root disk is the RBD clone.
	dom, err := l.DomainDefineXML(fmt.Sprintf(`<domain type='qemu'><name>%s</name><memory unit='MiB'>160</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><kernel>%s/vmlinux</kernel><initrd>%s/initramfs.cpio.gz</initrd>
<cmdline>console=ttyS0 panic=-1 quiet</cmdline></os><features><acpi/></features><on_poweroff>destroy</on_poweroff>
<devices>%s<serial type='file'><source path='%s'/><target port='0'/></serial><memballoon model='none'/></devices></domain>`,
		name, guest, guest, rootXML, console))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.DomainDestroy(dom); l.DomainUndefine(dom) })
	if err := l.DomainCreate(dom); err != nil {
		t.Fatal(err)
	}
	// The guest mounts its root filesystem from the clone through qemu's
	// rbd driver, switches to it, and its init lists vda at the clone's size
	// (48 MiB = 98304 sectors).
	testenv.WaitTrue(t, 240*time.Second, "the guest to boot from its RBD clone", func() bool {
		b, _ := os.ReadFile(console)
		return strings.Contains(string(b), "strata-guest: root /dev/vda strata test image") &&
			strings.Contains(string(b), "strata-guest: disk vda 98304 sectors") && strings.Contains(string(b), "strata-guest: nic")
	})
	watched := func(r rbd.Ref) bool {
		st, err := conn.Status(r)
		return err == nil && len(st.Watchers) > 0
	}
	if !watched(root) {
		t.Fatal("qemu does not have the root clone open")
	}
	set := func(vs ...rbd.Ref) {
		t.Helper()
		var want []attach.Volume
		for _, v := range vs {
			want = append(want, attach.Volume{Pool: v.Pool, Image: v.Image, Serial: v.Image[len(tag)+1:]})
		}
		for i := 0; i < 2; i++ { // the second call changes nothing
			if err := a.Set(ctx, name, want); err != nil {
				t.Fatalf("set %v (call %d): %v", vs, i+1, err)
			}
		}
		got, err := a.Attached(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var exp []string
		for _, v := range vs {
			exp = append(exp, v.String())
		}
		slices.Sort(exp)
		if !slices.Equal(got, exp) {
			t.Fatalf("attached %v, want %v", got, exp)
		}
	}

	set(v1)
	testenv.WaitTrue(t, 30*time.Second, "qemu to open v1", func() bool { return watched(v1) })

	// Online extend: the controller grows the image, the host tells qemu.
	if err := conn.Resize(v1, 128<<20); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := a.Grow(ctx, name, attach.Volume{Pool: v1.Pool, Image: v1.Image}, 128<<20); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitTrue(t, 30*time.Second, "qemu to see v1 at 128 MiB", func() bool {
		_, capacity, _, err := l.DomainGetBlockInfo(dom, "vdb", 0)
		return err == nil && capacity == 128<<20
	})

	set(v2)
	testenv.WaitTrue(t, 30*time.Second, "v1 closed and v2 opened", func() bool { return !watched(v1) && watched(v2) })
	inactive, err := l.DomainGetXMLDesc(dom, golibvirt.DomainXMLInactive)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(inactive, v2.String()) || strings.Contains(inactive, v1.String()) || !strings.Contains(inactive, "<secret type='ceph'") {
		t.Fatalf("persistent definition does not follow:\n%s", inactive)
	}
	if strings.Contains(inactive, "key=") {
		t.Fatal("a key in the domain definition")
	}

	set()
	testenv.WaitTrue(t, 30*time.Second, "v2 closed", func() bool { return !watched(v2) })
}
