package guestfeatures

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
)

// TestFeatures loads each kernel feature the CI kernel lacks and proves it
// works. Run in the guest by kerneltest.TestKernelFeaturesInGuest.
func TestFeatures(t *testing.T) {
	requireGuest(t)
	t.Run("openvswitch", testOpenvswitch)
	t.Run("gretap", testGretap)
	t.Run("dm-writecache", testWritecache)
	t.Run("dm-cache", testDMCache)
	t.Run("rbd", testRBD)
	t.Run("ovs-vswitchd", testVswitchd)
	t.Run("nf_tables", testNftables)
	t.Run("nbd", testNBD)
}

// testOpenvswitch creates a kernel datapath, adds a veth port to it and
// lists it back.
func testOpenvswitch(t *testing.T) {
	modprobe(t, "openvswitch")
	run(t, "ovs-dpctl", "add-dp", "strata-dp0")
	defer run(t, "ovs-dpctl", "del-dp", "strata-dp0")
	run(t, "ip", "link", "add", "strata-ovs0", "type", "veth", "peer", "name", "strata-ovs1")
	defer run(t, "ip", "link", "del", "strata-ovs0")
	run(t, "ovs-dpctl", "add-if", "strata-dp0", "strata-ovs0")
	out := run(t, "ovs-dpctl", "show", "strata-dp0")
	if !strings.Contains(out, "strata-ovs0") {
		t.Fatalf("datapath does not list its port strata-ovs0:\n%s", out)
	}
	t.Logf("ovs-dpctl show:\n%s", out)
}

// testGretap joins two namespaces by a veth underlay, tunnels a gretap
// link over it and pings across the tunnel.
func testGretap(t *testing.T) {
	modprobe(t, "ip_gre")
	for _, ns := range []string{"strata-a", "strata-b"} {
		run(t, "ip", "netns", "add", ns)
		defer run(t, "ip", "netns", "del", ns)
	}
	run(t, "ip", "link", "add", "strata-u0", "netns", "strata-a", "type", "veth", "peer", "name", "strata-u1", "netns", "strata-b")
	for i, ns := range []string{"strata-a", "strata-b"} {
		local, remote := fmt.Sprintf("172.31.0.%d", i+1), fmt.Sprintf("172.31.0.%d", 2-i)
		in := func(args ...string) { run(t, "ip", append([]string{"-n", ns}, args...)...) }
		in("link", "set", "lo", "up")
		in("addr", "add", local+"/24", "dev", fmt.Sprintf("strata-u%d", i))
		in("link", "set", fmt.Sprintf("strata-u%d", i), "up")
		in("link", "add", "strata-gre", "type", "gretap", "local", local, "remote", remote, "key", "4242")
		in("addr", "add", fmt.Sprintf("10.99.0.%d/24", i+1), "dev", "strata-gre")
		in("link", "set", "strata-gre", "up")
	}
	out := run(t, "ip", "-n", "strata-a", "-d", "link", "show", "strata-gre")
	if !strings.Contains(out, "gretap") {
		t.Fatalf("strata-gre is not a gretap link:\n%s", out)
	}
	run(t, "ip", "netns", "exec", "strata-a", "ping", "-c", "2", "-W", seconds(5*time.Second), "10.99.0.2")
}

// ramDisks loads brd with n RAM disks of sizeMB each, once per boot.
func ramDisks(t *testing.T, n, sizeMB int) {
	t.Helper()
	if _, err := os.Stat("/sys/module/brd"); err == nil {
		return
	}
	modprobe(t, "brd", "rd_nr="+strconv.Itoa(n), "rd_size="+strconv.Itoa(sizeMB*1024))
}

const (
	diskMB    = 32
	dataBytes = 4 << 20
)

// writePattern writes random data through dev and returns it.
func writePattern(t *testing.T, dev string) []byte {
	t.Helper()
	data := make([]byte, dataBytes)
	rand.Read(data)
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		t.Fatalf("write %s: %v", dev, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		t.Fatalf("fsync %s: %v", dev, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return data
}

// checkOrigin reads the origin device directly and compares it with want.
func checkOrigin(t *testing.T, origin string, want []byte) {
	t.Helper()
	f, err := os.Open(origin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatalf("read origin %s: %v", origin, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("origin %s does not hold the data written through the cache", origin)
	}
}

func sectors(t *testing.T, dev string) string {
	return strings.TrimSpace(run(t, "blockdev", "--getsz", dev))
}

// testWritecache puts a dm-writecache over two RAM disks, writes through
// it, flushes it, removes it and reads the data back from the origin.
func testWritecache(t *testing.T) {
	ramDisks(t, 5, diskMB)
	modprobe(t, "dm-writecache")
	origin, cache := "/dev/ram0", "/dev/ram1"
	table := fmt.Sprintf("0 %s writecache s %s %s 4096 0", sectors(t, origin), origin, cache)
	run(t, "dmsetup", "create", "strata-wc", "--table", table)
	removed := false
	defer func() {
		if !removed {
			run(t, "dmsetup", "remove", "strata-wc")
		}
	}()
	want := writePattern(t, "/dev/mapper/strata-wc")
	run(t, "dmsetup", "message", "strata-wc", "0", "flush")
	// status: <error> <total blocks> <free blocks> <blocks under writeback> ...
	st := strings.Fields(run(t, "dmsetup", "status", "strata-wc"))
	t.Logf("writecache status after flush: %v", st)
	if len(st) < 7 || st[2] != "writecache" || st[3] != "0" || st[6] != "0" {
		t.Fatalf("writecache status after flush: want no error and no block under writeback: %v", st)
	}
	run(t, "dmsetup", "remove", "strata-wc")
	removed = true
	checkOrigin(t, origin, want)
}

// testDMCache puts a writeback dm-cache over RAM disks, writes through it,
// switches to the cleaner policy until no block is dirty, removes it and
// reads the data back from the origin.
func testDMCache(t *testing.T) {
	ramDisks(t, 5, diskMB)
	modprobe(t, "dm-cache")
	modprobe(t, "dm-cache-smq")
	meta, cache, origin := "/dev/ram2", "/dev/ram3", "/dev/ram4"
	size := sectors(t, origin)
	table := func(policy string) string {
		return fmt.Sprintf("0 %s cache %s %s %s 128 1 writeback %s 0", size, meta, cache, origin, policy)
	}
	run(t, "dmsetup", "create", "strata-dc", "--table", table("smq"))
	removed := false
	defer func() {
		if !removed {
			run(t, "dmsetup", "remove", "strata-dc")
		}
	}()
	want := writePattern(t, "/dev/mapper/strata-dc")
	t.Logf("dm-cache status with smq: %s", run(t, "dmsetup", "status", "strata-dc"))

	run(t, "dmsetup", "reload", "strata-dc", "--table", table("cleaner"))
	run(t, "dmsetup", "suspend", "strata-dc")
	run(t, "dmsetup", "resume", "strata-dc")
	deadline := time.Now().Add(testenv.Scale(30 * time.Second))
	for {
		// status: <meta block size> <used>/<total meta> <cache block size>
		// <used>/<total cache> <read hits> <read misses> <write hits>
		// <write misses> <demotions> <promotions> <dirty> ...
		st := strings.Fields(run(t, "dmsetup", "status", "strata-dc"))
		if len(st) < 14 {
			t.Fatalf("dm-cache status: %v", st)
		}
		if st[13] == "0" {
			t.Logf("dm-cache status after cleaning: %v", st)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dm-cache still has %s dirty blocks after %s: %v", st[13], testenv.Scale(30*time.Second), st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	run(t, "dmsetup", "remove", "strata-dc")
	removed = true
	checkOrigin(t, origin, want)
}

// testRBD loads krbd and lists its sysfs bus, through which the agent maps
// images.
func testRBD(t *testing.T) {
	modprobe(t, "rbd")
	ents, err := os.ReadDir("/sys/bus/rbd")
	if err != nil {
		t.Fatalf("krbd loaded but /sys/bus/rbd: %v", err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	t.Logf("/sys/bus/rbd: %v", names)
	for _, want := range []string{"add_single_major", "remove_single_major", "devices"} {
		if !slices.Contains(names, want) {
			t.Errorf("/sys/bus/rbd lacks %s: %v", want, names)
		}
	}
}

// testVswitchd runs ovsdb-server and ovs-vswitchd on the kernel datapath
// and adds a GRE tunnel port, as the agent does on a production host, then
// pings across it: the bridge's own port (10.98.0.1) reaches a kernel
// gretap device (10.98.0.2) in a namespace at the far end of a veth
// underlay, so the GRE port carries traffic both ways.
func testVswitchd(t *testing.T) {
	modprobe(t, "openvswitch")
	d := t.TempDir()
	t.Setenv("OVS_RUNDIR", d)
	t.Setenv("OVS_LOGDIR", d)
	t.Setenv("OVS_DBDIR", d)
	db := "unix:" + d + "/db.sock"
	run(t, "ovsdb-tool", "create", d+"/conf.db", "/usr/share/openvswitch/vswitch.ovsschema")
	run(t, "ovsdb-server", d+"/conf.db", "--remote=punix:"+d+"/db.sock",
		"--remote=db:Open_vSwitch,Open_vSwitch,manager_options", "--unixctl="+d+"/ovsdb-server.ctl",
		"--pidfile="+d+"/ovsdb-server.pid", "--log-file="+d+"/ovsdb-server.log", "--detach")
	defer stopDaemon(t, d+"/ovsdb-server.pid")
	run(t, "ovs-vsctl", "--db="+db, "--no-wait", "init")
	run(t, "ovs-vswitchd", db, "--unixctl="+d+"/ovs-vswitchd.ctl",
		"--pidfile="+d+"/ovs-vswitchd.pid", "--log-file="+d+"/ovs-vswitchd.log", "--detach")
	defer stopDaemon(t, d+"/ovs-vswitchd.pid")
	waitFor := func(limit time.Duration, what string, cond func() error) {
		t.Helper()
		took, err := testenv.Poll(limit, cond)
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, vswitchdState(d, db))
		}
		t.Logf("%s after %s", what, took.Round(time.Millisecond))
	}
	vsctl := func(args ...string) string {
		return run(t, "ovs-vsctl", append([]string{"--db=" + db, "--timeout=" + seconds(30*time.Second)}, args...)...)
	}
	// The underlay: 172.31.9.1 here, 172.31.9.2 in the far namespace,
	// where a kernel gretap device ends the tunnel.
	modprobe(t, "ip_gre")
	run(t, "ip", "netns", "add", "strata-far")
	defer run(t, "ip", "netns", "del", "strata-far")
	run(t, "ip", "link", "add", "strata-gu0", "type", "veth", "peer", "name", "strata-gu1", "netns", "strata-far")
	defer run(t, "ip", "link", "del", "strata-gu0")
	run(t, "ip", "addr", "add", "172.31.9.1/24", "dev", "strata-gu0")
	run(t, "ip", "link", "set", "strata-gu0", "up")
	far := func(args ...string) { run(t, "ip", append([]string{"-n", "strata-far"}, args...)...) }
	far("link", "set", "lo", "up")
	far("addr", "add", "172.31.9.2/24", "dev", "strata-gu1")
	far("link", "set", "strata-gu1", "up")
	far("link", "add", "strata-gt", "type", "gretap", "local", "172.31.9.2", "remote", "172.31.9.1", "key", "77")
	far("addr", "add", "10.98.0.2/24", "dev", "strata-gt")
	far("link", "set", "strata-gt", "up")

	vsctl("add-br", "strata-br0", "--", "set", "bridge", "strata-br0", "datapath_type=system")
	defer vsctl("--if-exists", "del-br", "strata-br0")
	vsctl("add-port", "strata-br0", "strata-gre0", "--", "set", "interface", "strata-gre0",
		"type=gre", "options:remote_ip=172.31.9.2", "options:key=77")

	// Traffic passes only once every piece is in place; each is an event
	// to wait for, not a time to guess. ovs-vsctl returned when vswitchd
	// took the change, but the port numbers, the datapath's ports and the
	// bridge's default flow are set up after that.
	waitFor(60*time.Second, "the GRE port has an OpenFlow port number and no error", func() error {
		out, err := try("ovs-vsctl", "--db="+db, "--timeout="+seconds(10*time.Second), "--columns=ofport,error", "list", "interface", "strata-gre0")
		if err != nil {
			return err
		}
		if !regexp.MustCompile(`ofport\s*:\s*[1-9]`).MatchString(out) || !regexp.MustCompile(`error\s*:\s*\[\]`).MatchString(out) {
			return fmt.Errorf("interface strata-gre0:\n%s", out)
		}
		return nil
	})
	waitFor(60*time.Second, "the kernel datapath has the bridge's port and the GRE port", func() error {
		if out, err := try("ovs-dpctl", "show"); err != nil || !strings.Contains(out, "strata-br0") || !strings.Contains(out, "gre_sys") {
			return fmt.Errorf("ovs-dpctl show: %v\n%s", err, out)
		}
		return nil
	})
	waitFor(60*time.Second, "the bridge has its NORMAL flow", func() error {
		if out, err := try("ovs-ofctl", "dump-flows", "strata-br0"); err != nil || !strings.Contains(out, "actions=NORMAL") {
			return fmt.Errorf("ovs-ofctl dump-flows strata-br0: %v\n%s", err, out)
		}
		return nil
	})
	run(t, "ip", "addr", "add", "10.98.0.1/24", "dev", "strata-br0")
	run(t, "ip", "link", "set", "strata-br0", "up")
	waitFor(30*time.Second, "10.98.0.2 routes through strata-br0", func() error {
		if out, err := try("ip", "route", "get", "10.98.0.2"); err != nil || !strings.Contains(out, "dev strata-br0 ") {
			return fmt.Errorf("ip route get 10.98.0.2: %v %s", err, out)
		}
		return nil
	})
	// ARP is the first traffic both ways through the GRE port: a reply
	// means the tunnel works and both ends know each other's MAC. Each
	// try waits up to 2 s for its reply.
	waitFor(60*time.Second, "an ARP reply from 10.98.0.2 across the GRE port", func() error {
		_, err := try("arping", "-I", "strata-br0", "-c", "1", "-w", "2", "10.98.0.2")
		return err
	})
	out, err := exec.Command("ping", "-c", "3", "-W", seconds(5*time.Second), "10.98.0.2").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "3 packets received") {
		t.Fatalf("ping across the OVS GRE port after ARP resolved: %v\n%s\n%s", err, out, vswitchdState(d, db))
	}
	t.Logf("ovs-dpctl show:\n%s\nping across the GRE port:\n%s", run(t, "ovs-dpctl", "show"), out)
}

// try runs a command for a condition being waited for: its stdout, or an
// error with its output.
func try(name string, args ...string) (string, error) {
	var stdout, stderr strings.Builder
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v: %s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// stopDaemon kills the daemon whose pid file is given and waits for it.
func stopDaemon(t *testing.T, pidFile string) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Errorf("stop daemon: %v", err)
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Errorf("stop daemon: pid file %s: %v", pidFile, err)
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(testenv.Scale(10 * time.Second)); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

// testNftables loads a NAT table in one batch and lists it back.
func testNftables(t *testing.T) {
	modprobe(t, "nf_tables")
	rules := `table ip strata_nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.77.0.0/24 oifname "eth0" masquerade
	}
}
`
	f := t.TempDir() + "/rules.nft"
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "nft", "-f", f)
	defer run(t, "nft", "delete", "table", "ip", "strata_nat")
	if out := run(t, "nft", "list", "table", "ip", "strata_nat"); !strings.Contains(out, "masquerade") {
		t.Fatalf("nft table lacks its masquerade rule:\n%s", out)
	}
}

// testNBD loads nbd and checks its devices appear.
func testNBD(t *testing.T) {
	modprobe(t, "nbd", "nbds_max=2")
	if _, err := os.Stat("/dev/nbd0"); err != nil {
		t.Fatalf("nbd loaded but /dev/nbd0: %v", err)
	}
}

// vswitchdState is what to show when traffic does not pass: the daemon's
// log, its view of the ports and flows, the datapath's flows and the
// kernel's links and neighbours on both ends.
func vswitchdState(dir, db string) string {
	var b strings.Builder
	for _, c := range [][]string{
		{"ovs-vsctl", "--db=" + db, "--timeout=10", "show"},
		{"ovs-vsctl", "--db=" + db, "--timeout=10", "--columns=name,ofport,link_state,error", "list", "interface"},
		{"ovs-ofctl", "dump-flows", "strata-br0"},
		{"ovs-appctl", "--target=" + dir + "/ovs-vswitchd.ctl", "fdb/show", "strata-br0"},
		{"ovs-appctl", "--target=" + dir + "/ovs-vswitchd.ctl", "ovs/route/show"},
		{"ovs-dpctl", "show", "-s"},
		{"ovs-dpctl", "dump-flows"},
		{"ip", "-s", "-d", "link"},
		{"ip", "neigh"},
		{"ip", "route"},
		{"ip", "route", "get", "10.98.0.2"},
		{"ovs-appctl", "--target=" + dir + "/ovs-vswitchd.ctl", "upcall/show"},
		{"ip", "-n", "strata-far", "-s", "link"},
		{"ip", "-n", "strata-far", "neigh"},
		{"tail", "-n", "60", dir + "/ovs-vswitchd.log"},
	} {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		fmt.Fprintf(&b, "--- %s (%v)\n%s", strings.Join(c, " "), err, out)
	}
	return b.String()
}
