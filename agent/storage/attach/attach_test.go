package attach_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/strata-infra/strata/agent/compute/virttest"
	"github.com/strata-infra/strata/agent/storage/attach"
	"github.com/strata-infra/strata/internal/cephtest"
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
