package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Drivers says which implementation each subsystem uses on this host; the
// doctor checks what those need and nothing else.
type Drivers struct {
	Network string `json:"network"` // "linuxbridge", "ovs" or "none"
	Compute string `json:"compute"` // "libvirt" or "none"
	Storage string `json:"storage"` // "none", "librbd" or "krbd"
	Cache   string `json:"cache"`   // "none", "writecache" or "cache" (krbd only)
}

// DefaultDrivers is what a compute host without block storage runs.
func DefaultDrivers() Drivers {
	return Drivers{Network: "linuxbridge", Compute: "libvirt", Storage: "none", Cache: "none"}
}

// Validate names the first driver value it does not know.
func (d Drivers) Validate() error {
	for _, c := range []struct{ key, v, allowed string }{
		{"network", d.Network, "linuxbridge ovs none"},
		{"compute", d.Compute, "libvirt none"},
		{"storage", d.Storage, "none librbd krbd"},
		{"cache", d.Cache, "none writecache cache"},
	} {
		if !strings.Contains(" "+c.allowed+" ", " "+c.v+" ") {
			return fmt.Errorf("%s driver %q: want one of %s", c.key, c.v, c.allowed)
		}
	}
	if d.Cache != "none" && d.Storage != "krbd" {
		return fmt.Errorf("cache driver %q needs the krbd storage driver", d.Cache)
	}
	return nil
}

// Files are the agent's own files the doctor checks; empty fields are
// skipped.
type Files struct {
	TokenFile string
	GossipKey string
	StateDir  string
	// OVSDB is the ovs driver's OVSDB endpoint (network.ovs.db); a
	// unix: one is checked instead of the default sockets.
	OVSDB string
}

var (
	featVeth         = Feature{Name: "veth", Module: "veth", Config: "CONFIG_VETH"}
	featNFTables     = Feature{Name: "nf_tables", Module: "nf_tables", Config: "CONFIG_NF_TABLES"}
	featBrNetfilter  = Feature{Name: "br_netfilter", Module: "br_netfilter", Config: "CONFIG_BRIDGE_NETFILTER"}
	featBridge       = Feature{Name: "bridge", Module: "bridge", Config: "CONFIG_BRIDGE"}
	featVXLAN        = Feature{Name: "vxlan", Module: "vxlan", Config: "CONFIG_VXLAN"}
	featTun          = Feature{Name: "tun", Module: "tun", Config: "CONFIG_TUN"}
	featOVS          = Feature{Name: "openvswitch", Module: "openvswitch", Config: "CONFIG_OPENVSWITCH"}
	featGRE          = Feature{Name: "ip_gre", Module: "ip_gre", Config: "CONFIG_NET_IPGRE"}
	featRBD          = Feature{Name: "rbd", Module: "rbd", Config: "CONFIG_BLK_DEV_RBD"}
	featDMWritecache = Feature{Name: "dm-writecache", Module: "dm_writecache", Config: "CONFIG_DM_WRITECACHE", DMTarget: "writecache"}
	featDMCache      = Feature{Name: "dm-cache", Module: "dm_cache", Config: "CONFIG_DM_CACHE", DMTarget: "cache"}
)

const modFix = "use a kernel with %s, or modprobe %s"

func kfix(f Feature) string { return fmt.Sprintf(modFix, f.Config, f.Module) }

// Run runs every check the drivers need, in a stable order.
func Run(env Env, d Drivers, files Files) []Result {
	cfg := env.kernelConfig()
	var rs []Result
	add := func(r ...Result) { rs = append(rs, r...) }

	netns := Result{Check: "kernel:netns", Required: true, Status: OK, Detail: "/proc/self/ns/net"}
	if !env.exists("/proc/self/ns/net") {
		netns.Status, netns.Detail, netns.Fix = Missing, "no /proc/self/ns/net", "use a kernel with CONFIG_NET_NS"
	}
	add(netns, env.bin("ip", true, "apt install iproute2 / dnf install iproute"))
	if d.Network != "none" {
		add(env.kernel(featVeth, cfg, true, kfix(featVeth)),
			env.kernel(featNFTables, cfg, true, kfix(featNFTables)),
			env.kernel(featVXLAN, cfg, true, kfix(featVXLAN)),
			env.bin("nft", true, "apt install nftables / dnf install nftables"),
			env.bin("dnsmasq", true, "apt install dnsmasq-base / dnf install dnsmasq"))
	}
	switch d.Network {
	case "linuxbridge":
		add(env.kernel(featBridge, cfg, true, kfix(featBridge)),
			env.kernel(featBrNetfilter, cfg, true, kfix(featBrNetfilter)+" (security groups filter bridged traffic)"),
			env.bin("bridge", true, "apt install iproute2 / dnf install iproute"))
	case "ovs":
		// Without the module the driver falls back to the userspace
		// datapath (datapath_type=netdev), and says so in host status.
		// Security groups are the integration bridge's conntrack flows;
		// flows go in through ovs-ofctl. Provider networks keep their
		// Linux bridge.
		sockets := []string{"/run/openvswitch/db.sock", "/var/run/openvswitch/db.sock"}
		if p, ok := strings.CutPrefix(files.OVSDB, "unix:"); ok {
			sockets = []string{p}
		}
		add(env.kernel(featOVS, cfg, false, kfix(featOVS)+" (else the userspace datapath, netdev, is used)"),
			env.kernel(featGRE, cfg, false, kfix(featGRE)+" (only GRE tunnels need it)"),
			env.kernel(featBridge, cfg, true, kfix(featBridge)+" (provider networks' bridges)"),
			env.bin("ovs-vsctl", true, "apt install openvswitch-switch / dnf install openvswitch"),
			env.bin("ovs-ofctl", true, "apt install openvswitch-common / dnf install openvswitch"),
			env.socket("socket:ovsdb", true, "start Open vSwitch: systemctl start openvswitch-switch (openvswitch on rpm systems)",
				sockets...))
	}
	if d.Compute == "libvirt" {
		add(env.kernel(featTun, cfg, true, kfix(featTun)),
			env.file("dev:net/tun", "/dev/net/tun", true, "mknod /dev/net/tun c 10 200, or load tun"),
			env.bin("qemu-system-x86_64", true, "apt install qemu-system-x86 / dnf install qemu-kvm"),
			env.anyBin("libvirtd", true, "apt install libvirt-daemon-system / dnf install libvirt-daemon", "libvirtd", "virtqemud"),
			env.socket("socket:libvirt", true, "start libvirt: systemctl start libvirtd (or virtqemud.socket)",
				"/run/libvirt/libvirt-sock", "/run/libvirt/virtqemud-sock", "/var/run/libvirt/libvirt-sock"),
			env.kvm())
	}
	switch d.Storage {
	case "librbd":
		add(env.bin("rbd", true, "apt install ceph-common / dnf install ceph-common"),
			env.anyFile("lib:librbd", true, "apt install librbd1 / dnf install librbd1",
				"/usr/lib/x86_64-linux-gnu/librbd.so.1", "/usr/lib64/librbd.so.1", "/usr/lib/librbd.so.1"))
	case "krbd":
		add(env.kernel(featRBD, cfg, true, kfix(featRBD)),
			env.bin("rbd", true, "apt install ceph-common / dnf install ceph-common"))
	}
	if d.Cache != "none" {
		f := featDMWritecache
		if d.Cache == "cache" {
			f = featDMCache
		}
		dm := Result{Check: "kernel:device-mapper", Required: true, Status: OK, Detail: "device-mapper in /proc/devices"}
		if !env.procDevice("device-mapper") {
			dm.Status, dm.Detail, dm.Fix = Missing, "no device-mapper in /proc/devices", "use a kernel with CONFIG_BLK_DEV_DM, or modprobe dm_mod"
		}
		add(dm, env.kernel(f, cfg, true, kfix(f)),
			env.bin("dmsetup", true, "apt install dmsetup / dnf install device-mapper"))
	}
	add(env.agentFiles(files)...)
	return rs
}

func (e Env) bin(name string, required bool, fix string) Result {
	return e.anyBin(name, required, fix, name)
}

func (e Env) anyBin(check string, required bool, fix string, names ...string) Result {
	r := Result{Check: "bin:" + check, Required: required, Fix: fix}
	for _, n := range names {
		if p, err := e.LookPath(n); err == nil {
			r.Status, r.Detail = OK, p
			return r
		}
	}
	r.Status, r.Detail = Missing, strings.Join(names, " or ")+" not on PATH"
	return optional(r)
}

func (e Env) socket(check string, required bool, fix string, paths ...string) Result {
	r := Result{Check: check, Required: required, Fix: fix}
	var errs []string
	for _, p := range paths {
		err := e.Dial(e.path(p))
		if err == nil {
			r.Status, r.Detail = OK, p+" accepts connections"
			return r
		}
		if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err.Error())
		}
	}
	r.Status, r.Detail = Missing, "no listener at "+strings.Join(paths, ", ")
	if len(errs) > 0 {
		r.Detail += ": " + strings.Join(errs, "; ")
	}
	return optional(r)
}

func (e Env) file(check, path string, required bool, fix string) Result {
	return e.anyFile(check, required, fix, path)
}

func (e Env) anyFile(check string, required bool, fix string, paths ...string) Result {
	r := Result{Check: check, Required: required, Fix: fix}
	for _, p := range paths {
		if e.exists(p) {
			r.Status, r.Detail = OK, p
			return r
		}
	}
	r.Status, r.Detail = Missing, "none of "+strings.Join(paths, ", ")
	return optional(r)
}

// kvm: /dev/kvm that opens read-write; else guests run under TCG.
func (e Env) kvm() Result {
	r := Result{Check: "dev:kvm", Fix: "enable virtualisation (VT-x/AMD-V) and load kvm_intel or kvm_amd; without it guests run under TCG"}
	f, err := os.OpenFile(e.path("/dev/kvm"), os.O_RDWR, 0)
	if err != nil {
		r.Status, r.Detail = Warn, fmt.Sprintf("/dev/kvm not usable (%v): TCG fallback, much slower", err)
		return r
	}
	f.Close()
	r.Status, r.Detail = OK, "/dev/kvm opens read-write"
	return r
}

func (e Env) procDevice(name string) bool {
	b, err := os.ReadFile(e.path("/proc/devices"))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[1] == name {
			return true
		}
	}
	return false
}

func optional(r Result) Result {
	if !r.Required && r.Status == Missing {
		r.Status = Warn
	}
	return r
}
