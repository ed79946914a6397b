package attach_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
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

// TestLiveMigrationOnRBD moves a running TCG guest, booted from an RBD
// clone, between two libvirtds on this machine, each in a host namespace
// of its own (as lab hosts are), through the compute driver: the
// destination prepares, the source's libvirtd migrates the domain peer to
// peer (LibvirtMigrator, progress lines printed) and the destination then
// has it running while the source has nothing. The guest is pinged every
// 200 ms from a namespace on the guests' segment the whole time; the loss
// is printed. It must answer from its new host, and qemu must hold its
// root disk open there.
//
// The two hosts: namespaces A and B, each with a veth into the Ceph
// cluster's bridge (qemu reaches the monitors and OSD) and a bridge "gbr"
// for the guest's tap, uplinked to one segment bridge in the root
// namespace; a client namespace on that segment runs dnsmasq (the guest's
// address) and the ping.
func TestLiveMigrationOnRBD(t *testing.T) {
	cl, keyring, conn := cephUser(t, "strata")
	testenv.RequireBinary(t, "dnsmasq", "busybox")
	ctx := context.Background()
	tag := testenv.Tag('m')
	guest, root := rootClone(t, conn, tag)

	n := newMigrationNet(t, tag, cl)
	dir := t.TempDir()
	mons, err := attach.ParseMonHost(cl.MonHost())
	if err != nil {
		t.Fatal(err)
	}
	secret := uuid()
	type host struct {
		d   *virttest.Daemon
		lv  *compute.Libvirt
		drv *compute.Driver
	}
	hosts := map[string]*host{}
	for i, name := range []string{"A", "B"} {
		d, err := virttest.New(filepath.Join(dir, "lv"+name), n.hostNS[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.KillGuests(); d.Stop() })
		hosts[name] = &host{d: d, lv: compute.NewLibvirt(d.Socket, nil)}
	}
	peers := func(peer string) (string, string) {
		return "qemu+unix:///system?socket=" + hosts[peer].d.Socket, "" // tunnelled, the default
	}
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	for i, name := range []string{"A", "B"} {
		h := hosts[name]
		av, err := attach.New(h.d.Socket, attach.Client{Monitors: mons, User: "strata", Keyring: keyring, SecretUUID: secret})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { av.Close() })
		vols := attach.NewHost(av, func(pool, image string) ([]string, error) { return conn.Claim(rbd.Ref{Pool: pool, Image: image}) }, nil)
		h.drv, err = compute.New(compute.Config{
			Hypervisor: h.lv, Migrator: compute.NewLibvirtMigrator(h.lv, peers), Volumes: vols,
			DomainPrefix: tag + "-", StateDir: filepath.Join(dir, "compute"+name), NetNS: n.hostNS[i],
			DomainType: compute.DomainQEMU, Capacity: computespec.Capacity{VCPUs: 2, RAMMiB: 2048, DiskGiB: 10},
			ShutdownTimeout: 3 * time.Second, Logger: log.With("host", name),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.drv.Set(ctx, nil); h.drv.Close() })
	}
	id := "vm-" + tag
	in := compute.Instance{
		Spec: computespec.Instance{ID: id, Name: "vm", Flavor: "tiny", Power: computespec.PowerRunning,
			Root:  &computespec.Volume{Pool: root.Pool, Image: root.Image, Serial: "root"},
			Ports: []computespec.Port{{ID: tag + "p", NetworkID: "n", VNI: 1, MAC: n.guestMAC, Bridge: "gbr"}}},
		Flavor: computespec.Flavor{Name: "tiny", VCPUs: 1, RAMMiB: 160},
		Boot: &compute.DirectBoot{Kernel: filepath.Join(guest, "vmlinux"), Initrd: filepath.Join(guest, "initramfs.cpio.gz"),
			Firmware: "/usr/share/qemu/qboot.rom", Cmdline: "console=ttyS0 panic=-1 quiet"},
	}
	if err := hosts["A"].drv.Set(ctx, []compute.Instance{in}); err != nil {
		t.Fatal(err)
	}
	took := testenv.WaitTrue(t, 300*time.Second, "the guest to answer ping on host A", func() bool { return n.pingOnce() })
	t.Logf("guest booted from RBD on A and answers ping after %v", took.Round(time.Millisecond))

	inB := in
	inB.Migration = &compute.Migration{Peer: "A", Live: true}
	if err := hosts["B"].drv.Set(ctx, []compute.Instance{inB}); err != nil {
		t.Fatalf("destination prepares: %v", err)
	}
	if out, _ := hosts["B"].d.Virsh("list", "--all", "--name"); strings.Contains(out, id) {
		t.Fatalf("the destination defined the domain before it arrived:\n%s", out)
	}
	pinger := n.startPing(t)
	time.Sleep(2 * time.Second) // a baseline before the move
	inA := in
	inA.Migration = &compute.Migration{Peer: "B", Out: true, Live: true}
	start := time.Now()
	if err := hosts["A"].drv.Set(ctx, []compute.Instance{inA}); err != nil {
		t.Fatalf("live migration: %v", err)
	}
	moved := time.Since(start)
	if err := hosts["B"].drv.Set(ctx, []compute.Instance{inB}); err != nil {
		t.Fatalf("destination after the move: %v", err)
	}
	testenv.WaitTrue(t, 60*time.Second, "the guest to answer ping on host B", func() bool { return n.pingOnce() })
	time.Sleep(2 * time.Second)
	sent, recv, gap := pinger.stop(t)
	fmt.Printf("bench: live migration of a running 160 MiB TCG guest on RBD between two libvirtds: %v; ping every 200 ms: %d sent, %d lost (%.1f%%), longest gap %v\n",
		moved.Round(time.Millisecond), sent, sent-recv, 100*float64(sent-recv)/float64(max(sent, 1)), gap.Round(time.Millisecond))

	if out, _ := hosts["A"].d.Virsh("list", "--all", "--name"); strings.Contains(out, id) {
		t.Fatalf("the source still has the domain after the move:\n%s", out)
	}
	if out, err := hosts["B"].d.Virsh("domstate", tag+"-"+id); err != nil || strings.TrimSpace(out) != "running" {
		t.Fatalf("the destination's domain: %q %v", out, err)
	}
	if st, err := conn.Status(root); err != nil || len(st.Watchers) == 0 {
		t.Fatalf("no qemu holds the root disk after the move: %+v %v", st, err)
	}
	if recv == 0 {
		t.Fatal("no ping answered during the move")
	}
	// The move is over: the source forgets the instance, the destination
	// keeps it as its own.
	if err := hosts["A"].drv.Set(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := hosts["B"].drv.Set(ctx, []compute.Instance{in}); err != nil {
		t.Fatal(err)
	}
	if !n.pingOnce() {
		t.Fatal("the guest stopped answering once the source forgot it")
	}
}

// migrationNet is the test's network: two host namespaces and a client.
type migrationNet struct {
	hostNS   [2]string
	cephAddr map[string]netip.Addr // each host's address on the Ceph bridge
	client   string
	guestIP  string
	guestMAC net.HardwareAddr
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newMigrationNet(t *testing.T, tag string, cl *cephtest.Cluster) *migrationNet {
	n := &migrationNet{cephAddr: map[string]netip.Addr{}, client: tag + "c", guestIP: "10.79.0.10",
		guestMAC: net.HardwareAddr{0x52, 0x54, 0x00, 0x79, 0x00, 0x10}}
	seg := tag + "s"
	run(t, "ip", "link", "add", seg, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", seg).Run() })
	run(t, "ip", "link", "set", seg, "up")
	base := cl.Addr.Addr().As4()
	for i, name := range []string{"A", "B"} {
		ns := tag + name
		n.hostNS[i] = ns
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		// The Ceph leg: root side in the cluster's bridge.
		c := fmt.Sprintf("%s%sc", tag, name)
		run(t, "ip", "link", "add", c, "type", "veth", "peer", "name", "ceph", "netns", ns)
		t.Cleanup(func() { exec.Command("ip", "link", "del", c).Run() })
		run(t, "ip", "link", "set", c, "master", cl.Bridge, "up")
		a := netip.AddrFrom4([4]byte{base[0], base[1], base[2], byte(211 + i)})
		n.cephAddr[name] = a
		run(t, "ip", "-n", ns, "addr", "add", netip.PrefixFrom(a, cl.Addr.Bits()).String(), "dev", "ceph")
		run(t, "ip", "-n", ns, "link", "set", "ceph", "up")
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		// The guests' bridge, uplinked to the segment.
		u := fmt.Sprintf("%s%su", tag, name)
		run(t, "ip", "-n", ns, "link", "add", "gbr", "type", "bridge")
		run(t, "ip", "-n", ns, "link", "set", "gbr", "up")
		run(t, "ip", "link", "add", u, "type", "veth", "peer", "name", "uplink", "netns", ns)
		run(t, "ip", "link", "set", u, "master", seg, "up")
		run(t, "ip", "-n", ns, "link", "set", "uplink", "master", "gbr", "up")
	}
	run(t, "ip", "netns", "add", n.client)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.client).Run() })
	cv := tag + "cv"
	run(t, "ip", "link", "add", cv, "type", "veth", "peer", "name", "eth0", "netns", n.client)
	run(t, "ip", "link", "set", cv, "master", seg, "up")
	run(t, "ip", "-n", n.client, "addr", "add", "10.79.0.1/24", "dev", "eth0")
	run(t, "ip", "-n", n.client, "link", "set", "eth0", "up")
	run(t, "ip", "-n", n.client, "link", "set", "lo", "up")
	dir := t.TempDir()
	cmd := exec.Command("ip", "netns", "exec", n.client, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
		"--user=root", "--group=root", "--pid-file="+filepath.Join(dir, "dnsmasq.pid"),
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--interface=eth0", "--bind-interfaces", "--except-interface=lo",
		"--dhcp-range=10.79.0.100,10.79.0.150,255.255.255.0,1h", "--dhcp-host="+n.guestMAC.String()+","+n.guestIP,
		"--no-resolv", "--no-hosts", "--dhcp-authoritative", "--port=0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return n
}

func (n *migrationNet) pingOnce() bool {
	return exec.Command("ip", "netns", "exec", n.client, "busybox", "ping", "-c", "1", "-W", "1", n.guestIP).Run() == nil
}

// pinger is a busybox ping running until stopped (SIGINT: it prints its
// summary).
type pinger struct {
	cmd *exec.Cmd
	out strings.Builder
}

func (n *migrationNet) startPing(t *testing.T) *pinger {
	p := &pinger{cmd: exec.Command("ip", "netns", "exec", n.client, "busybox", "ping", "-i", "0.2", "-W", "1", n.guestIP)}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill() })
	return p
}

var (
	pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`)
	pingSeq     = regexp.MustCompile(`seq=(\d+)`)
)

// stop ends the ping and returns what it sent and got back, and the
// longest run of unanswered pings as time.
func (p *pinger) stop(t *testing.T) (sent, recv int, gap time.Duration) {
	p.cmd.Process.Signal(syscall.SIGINT)
	p.cmd.Wait()
	out := p.out.String()
	m := pingSummary.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no ping summary:\n%s", out)
	}
	sent, _ = strconv.Atoi(m[1])
	recv, _ = strconv.Atoi(m[2])
	last, longest := -1, 0
	for _, s := range pingSeq.FindAllStringSubmatch(out, -1) {
		seq, _ := strconv.Atoi(s[1])
		longest = max(longest, seq-last-1)
		last = seq
	}
	longest = max(longest, sent-1-last)
	return sent, recv, time.Duration(longest) * 200 * time.Millisecond
}
