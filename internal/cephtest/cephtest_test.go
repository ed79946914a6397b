package cephtest

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { Main(m, "s13t", "rbd") }

// TestClusterReachableFromNamespace: a network namespace with a veth into
// the cluster's bridge (as a lab host has) creates, lists and writes an
// RBD image as a non-admin cephx user: the daemons bind an address the
// namespace reaches.
func TestClusterReachableFromNamespace(t *testing.T) {
	c := Require(t)
	ctx := context.Background()
	tag := fmt.Sprintf("s13%d", os.Getpid())
	ns, hostEnd, nsEnd := tag+"n", tag+"h", tag+"g"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run("ip", "link", "add", hostEnd, "type", "veth", "peer", "name", nsEnd)
	t.Cleanup(func() { exec.Command("ip", "link", "del", hostEnd).Run() })
	run("ip", "link", "set", hostEnd, "master", c.Bridge, "up")
	run("ip", "link", "set", nsEnd, "netns", ns)
	a := c.Addr.Addr().As4()
	a[3] = 11
	addr := netip.PrefixFrom(netip.AddrFrom4(a), c.Addr.Bits())
	run("ip", "-n", ns, "addr", "add", addr.String(), "dev", nsEnd)
	run("ip", "-n", ns, "link", "set", nsEnd, "up")
	run("ip", "-n", ns, "link", "set", "lo", "up")

	keyring, err := c.CreateUser(ctx, "client.s13ns", "mon", "profile rbd", "osd", "profile rbd")
	if err != nil {
		t.Fatal(err)
	}
	rbd := func(args ...string) string {
		t.Helper()
		full := append([]string{"netns", "exec", ns, "rbd", "-c", c.Conf, "--id", "s13ns", "--keyring", keyring}, args...)
		out, err := exec.Command("ip", full...).CombinedOutput()
		if err != nil {
			t.Fatalf("rbd %s in %s: %v: %s", strings.Join(args, " "), ns, err, out)
		}
		return string(out)
	}
	rbd("create", "rbd/"+tag, "--size", "8M")
	if out := rbd("ls", "rbd"); !strings.Contains(out, tag) {
		t.Fatalf("rbd ls from the namespace: %q", out)
	}
	if out := rbd("bench", "--io-type", "write", "--io-size", "4K", "--io-total", "1M", "rbd/"+tag); !strings.Contains(out, "elapsed") {
		t.Fatalf("rbd bench from the namespace: %q", out)
	}
	rbd("rm", "rbd/"+tag)
	t.Logf("cluster bring-up took %.1fs", c.BringUp.Seconds())
}
