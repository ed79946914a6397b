package kerneltest

import (
	"fmt"
	"strings"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
)

// GuestEnv is set to "1" by the guest's /init for the test binary.
const GuestEnv = "STRATA_KERNELTEST_GUEST"

// DefaultModules are packed into every guest (with their dependencies). The
// guest's /init loads only crc32c_generic and the virtio NIC; tests modprobe
// what they use.
var DefaultModules = []string{
	"openvswitch", "vport-gre", "vport-vxlan",
	"ip_gre", "gre", "vxlan", "veth", "bridge", "8021q", "dummy", "tun",
	"nf_tables", "nft_chain_nat", "nft_nat", "nft_ct", "nft_masq", "nft_reject_inet", "nf_conntrack",
	"dm-mod", "dm-writecache", "dm-cache", "dm-cache-smq",
	"brd", "loop", "nbd", "rbd", "virtio_blk",
}

// DefaultTools are the host tools packed into every guest, at their host
// paths, with their shared libraries.
var DefaultTools = []string{
	"ip", "bridge", "nft", "dmsetup",
	"ovs-vsctl", "ovsdb-server", "ovs-vswitchd", "ovsdb-tool", "ovs-dpctl", "ovs-appctl", "ovs-ofctl",
}

// DefaultFiles are data files the default tools need in the guest.
// The host's user and group names come along: dnsmasq drops to an
// unprivileged user (never root), which must exist in the guest.
var DefaultFiles = []string{"/usr/share/openvswitch/vswitch.ovsschema", "/etc/passwd", "/etc/group"}

// Options tune one guest run. The zero value runs with the defaults.
type Options struct {
	// Modules are kernel modules packed in addition to DefaultModules.
	Modules []string
	// Preload are modules the guest's /init loads before the test starts.
	Preload []string
	// Tools are host tools (names in PATH or absolute paths) packed in
	// addition to DefaultTools; Files are extra data files.
	Tools []string
	Files []string
	// Env is set for the test binary in the guest.
	Env map[string]string
	// Args are passed to the test binary after -test.v and -test.run.
	Args []string
	// Timeout bounds the guest from qemu's start to its exit; the guest is
	// killed when it passes. Default 3 minutes times STRATA_TIMEOUT_FACTOR.
	Timeout time.Duration
	// MemoryMB is the guest's RAM. Default 512.
	MemoryMB int
	// Tags are build tags for go test -c.
	Tags []string
	// CGO builds the test binary with cgo (dynamic; its libraries are
	// packed too). Default off: a static binary.
	CGO bool
	// Drives are host files (raw images) the guest sees as virtio disks
	// /dev/vda, /dev/vdb... in order, written through to the file, so a
	// later guest finds what an earlier one wrote (modprobe virtio_blk in
	// the test).
	Drives []string
}

const (
	defaultTimeout  = 3 * time.Minute
	defaultMemoryMB = 512
)

func (o Options) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return testenv.Scale(defaultTimeout)
}

func (o Options) memoryMB() int {
	if o.MemoryMB > 0 {
		return o.MemoryMB
	}
	return defaultMemoryMB
}

// image describes the cached part of the guest: what goes into the base
// initramfs.
type image struct {
	modules, preload, tools, files []string
}

func (o Options) image() image {
	return image{
		modules: join(DefaultModules, o.Modules),
		preload: join(nil, o.Preload),
		tools:   join(DefaultTools, o.Tools),
		files:   join(DefaultFiles, o.Files),
	}
}

// join returns base followed by the entries of extra it lacks, in order.
func join(base, extra []string) []string {
	out := append([]string(nil), base...)
	seen := make(map[string]bool, len(out))
	for _, s := range out {
		seen[s] = true
	}
	for _, s := range extra {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// validWord rejects what cannot pass through the scripts' word lists.
func validWord(kind, s string) error {
	if s == "" || strings.ContainsAny(s, " \t\n'\"$`\\") {
		return fmt.Errorf("%s %q: empty or contains whitespace or shell quoting", kind, s)
	}
	return nil
}

func (im image) validate() error {
	for _, l := range []struct {
		kind  string
		words []string
	}{{"module", im.modules}, {"module", im.preload}, {"tool", im.tools}, {"file", im.files}} {
		for _, w := range l.words {
			if err := validWord(l.kind, w); err != nil {
				return err
			}
		}
	}
	return nil
}
