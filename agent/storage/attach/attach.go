// Package attach attaches RBD volumes to libvirt domains on the instance's
// host, as librbd network disks (<source protocol='rbd'>): qemu opens the
// image itself through its rbd block driver (Debian: qemu-block-extra) with
// the cephx key held in a libvirt secret, never on a command line. Volumes
// are hot-plugged into a running domain and kept in its persistent
// definition. Every RBD image Strata makes has the exclusive-lock feature,
// so two qemus never write one image at once.
package attach

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"libvirt.org/go/libvirtxml"

	"github.com/strata-infra/strata/agent/storage/cachedvol"
)

// Client is how qemu reaches Ceph on this host.
type Client struct {
	Monitors   []netip.AddrPort // v1 (messenger 1) monitor addresses
	User       string           // cephx id without "client."
	Keyring    string           // the user's keyring file; its key goes into the secret
	SecretUUID string           // the libvirt secret holding the key
}

// Volume is one RBD image attached to a domain; Serial (the volume's name)
// is what the guest sees in /dev/disk/by-id. Dev, when set, is the host
// block device of a krbd volume (cachedvol.DevicePath), which the domain
// opens instead of the image; Cached is how that device is made.
type Volume struct {
	Pool, Image, Serial string
	Dev                 string
	Cached              *cachedvol.Volume
}

// source is what identifies the volume among a domain's disks: its block
// device, or pool/image for librbd.
func (v Volume) source() string {
	if v.Dev != "" {
		return v.Dev
	}
	return v.Pool + "/" + v.Image
}

// Libvirt attaches through a libvirtd socket.
type Libvirt struct {
	socket string
	client Client
	// claim, when set, runs before a volume is attached (NewHost sets it).
	claim func(ctx context.Context, v Volume) error
	// beforeUnplug, when set, runs before a disk is detached from a
	// running domain, and says whether it may go yet (NewHost sets it:
	// a krbd volume's cache is written back first).
	beforeUnplug func(ctx context.Context, src string) (bool, error)

	mu sync.Mutex
	l  *golibvirt.Libvirt
}

// New returns an attacher; it dials libvirtd on first use.
func New(socket string, c Client) (*Libvirt, error) {
	if len(c.Monitors) == 0 || c.User == "" || c.SecretUUID == "" {
		return nil, errors.New("attach: monitors, user and secret UUID are required")
	}
	return &Libvirt{socket: socket, client: c}, nil
}

func (a *Libvirt) conn() (*golibvirt.Libvirt, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.l != nil && a.l.IsConnected() {
		return a.l, nil
	}
	l := golibvirt.NewWithDialer(dialers.NewLocal(dialers.WithSocket(a.socket), dialers.WithLocalTimeout(2*time.Second)))
	if err := l.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		return nil, fmt.Errorf("libvirtd %q: %w", a.socket, err)
	}
	a.l = l
	return l, nil
}

// Close disconnects from libvirtd; attached volumes stay attached.
func (a *Libvirt) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.l == nil {
		return nil
	}
	err := a.l.Disconnect()
	a.l = nil
	return err
}

// EnsureSecret defines the libvirt secret (private: libvirt never hands the
// value out again) with the key from the keyring file. Idempotent.
func (a *Libvirt) EnsureSecret(ctx context.Context) error {
	key, err := readKey(a.client.Keyring)
	if err != nil {
		return err
	}
	l, err := a.conn()
	if err != nil {
		return err
	}
	x, err := (&libvirtxml.Secret{Ephemeral: "no", Private: "yes", UUID: a.client.SecretUUID,
		Description: "Strata: cephx key of client." + a.client.User,
		Usage:       &libvirtxml.SecretUsage{Type: "ceph", Name: "strata client." + a.client.User}}).Marshal()
	if err != nil {
		return err
	}
	s, err := l.SecretDefineXML(x, 0)
	if err != nil {
		return fmt.Errorf("define ceph secret %s: %w", a.client.SecretUUID, err)
	}
	if err := l.SecretSetValue(s, key, 0); err != nil {
		return fmt.Errorf("set ceph secret %s: %w", a.client.SecretUUID, err)
	}
	return nil
}

// readKey returns the raw cephx key of the first "key = " line.
func readKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ceph keyring: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok && strings.TrimSpace(k) == "key" {
			b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
			if err != nil {
				return nil, fmt.Errorf("ceph keyring %s: the key is not base64: %w", path, err)
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("ceph keyring %s: no key line", path)
}

// DiskXML is the libvirt disk of an RBD volume at target dev (vdb...):
// a librbd network disk, or for a krbd volume a block disk on its host
// device (O_DIRECT and native AIO: the host's page cache stays out of the
// way of the volume's own cache).
func (a *Libvirt) DiskXML(v Volume, dev string) libvirtxml.DomainDisk {
	if v.Dev != "" {
		return libvirtxml.DomainDisk{
			Device: "disk",
			Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw", Cache: "none", IO: "native", Discard: "unmap"},
			Source: &libvirtxml.DomainDiskSource{Block: &libvirtxml.DomainDiskSourceBlock{Dev: v.Dev}},
			Target: &libvirtxml.DomainDiskTarget{Dev: dev, Bus: "virtio"},
			Serial: v.Serial,
		}
	}
	var hosts []libvirtxml.DomainDiskSourceHost
	for _, m := range a.client.Monitors {
		hosts = append(hosts, libvirtxml.DomainDiskSourceHost{Name: m.Addr().String(), Port: strconv.Itoa(int(m.Port()))})
	}
	return libvirtxml.DomainDisk{
		Device: "disk",
		Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw", Cache: "none", Discard: "unmap"},
		Auth: &libvirtxml.DomainDiskAuth{Username: a.client.User,
			Secret: &libvirtxml.DomainDiskSecret{Type: "ceph", UUID: a.client.SecretUUID}},
		Source: &libvirtxml.DomainDiskSource{Network: &libvirtxml.DomainDiskSourceNetwork{
			Protocol: "rbd", Name: v.source(), Hosts: hosts}},
		Target: &libvirtxml.DomainDiskTarget{Dev: dev, Bus: "virtio"},
		Serial: v.Serial,
	}
}

// attached reads the domain's disks: its RBD volumes by source (krbd ones
// by their block device), and every target name in use.
func attached(l *golibvirt.Libvirt, dom golibvirt.Domain, flags golibvirt.DomainXMLFlags) (map[string]libvirtxml.DomainDisk, map[string]bool, error) {
	x, err := l.DomainGetXMLDesc(dom, flags)
	if err != nil {
		return nil, nil, err
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(x); err != nil {
		return nil, nil, err
	}
	rbd := map[string]libvirtxml.DomainDisk{}
	devs := map[string]bool{}
	if d.Devices == nil {
		return rbd, devs, nil
	}
	for _, disk := range d.Devices.Disks {
		if disk.Target != nil {
			devs[disk.Target.Dev] = true
		}
		if s := disk.Source; s != nil && s.Network != nil && s.Network.Protocol == "rbd" {
			rbd[s.Network.Name] = disk
		} else if s != nil && s.Block != nil && isKernelDev(s.Block.Dev) {
			rbd[s.Block.Dev] = disk
		}
	}
	return rbd, devs, nil
}

var devRE = regexp.MustCompile(`^vd([b-z])$`)

func freeDev(used map[string]bool) (string, error) {
	for c := 'b'; c <= 'z'; c++ {
		if d := "vd" + string(c); !used[d] {
			return d, nil
		}
	}
	return "", errors.New("no free virtio disk name (vdb..vdz)")
}

// Set makes the domain's attached RBD volumes exactly want (its root disk,
// target vda, is never touched): detaches the others, attaches the missing
// ones, live when the domain runs and always in its persistent definition.
// Calling it again changes nothing.
func (a *Libvirt) Set(ctx context.Context, domain string, want []Volume) error {
	l, err := a.conn()
	if err != nil {
		return err
	}
	dom, err := l.DomainLookupByName(domain)
	if err != nil {
		return fmt.Errorf("domain %q: %w", domain, err)
	}
	state, _, err := l.DomainGetState(dom, 0)
	if err != nil {
		return fmt.Errorf("domain %q state: %w", domain, err)
	}
	flags := uint32(golibvirt.DomainDeviceModifyConfig)
	xmlFlags := golibvirt.DomainXMLInactive
	if golibvirt.DomainState(state) == golibvirt.DomainRunning || golibvirt.DomainState(state) == golibvirt.DomainPaused {
		flags |= uint32(golibvirt.DomainDeviceModifyLive)
		xmlFlags = 0
	}
	have, used, err := attached(l, dom, xmlFlags)
	if err != nil {
		return fmt.Errorf("domain %q disks: %w", domain, err)
	}
	persistent := have
	if xmlFlags == 0 {
		if persistent, _, err = attached(l, dom, golibvirt.DomainXMLInactive); err != nil {
			return fmt.Errorf("domain %q persistent disks: %w", domain, err)
		}
	}
	wanted := map[string]bool{}
	for _, v := range want {
		wanted[v.source()] = true
	}
	var errs []error
	for src, disk := range have {
		if wanted[src] || disk.Target == nil || !devRE.MatchString(disk.Target.Dev) {
			continue
		}
		// A live detach completes when the guest lets the device go; its
		// target name stays taken until then. The persistent definition
		// loses the disk at once, so a disk still live but gone from it
		// is a detach under way: asking again would fail (libvirt: no
		// such device in the definition; qemu: already being unplugged).
		if _, ok := persistent[src]; !ok {
			continue
		}
		if a.beforeUnplug != nil && flags&uint32(golibvirt.DomainDeviceModifyLive) != 0 {
			ready, err := a.beforeUnplug(ctx, src)
			if err != nil {
				errs = append(errs, fmt.Errorf("detach %s from %q: %w", src, domain, err))
			}
			if !ready {
				continue // the disk stays; a later pass unplugs it
			}
		}
		x, _ := disk.Marshal()
		if err := l.DomainDetachDeviceFlags(dom, x, flags); err != nil {
			errs = append(errs, fmt.Errorf("detach %s from %q: %w", src, domain, err))
		}
	}
	for _, v := range want {
		if _, ok := have[v.source()]; ok {
			continue
		}
		dev, err := freeDev(used)
		if err != nil {
			errs = append(errs, err)
			break
		}
		if a.claim != nil {
			if err := a.claim(ctx, v); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		disk := a.DiskXML(v, dev)
		x, err := disk.Marshal()
		if err != nil {
			return err
		}
		if err := l.DomainAttachDeviceFlags(dom, x, flags); err != nil {
			errs = append(errs, fmt.Errorf("attach %s to %q as %s: %w", v.source(), domain, dev, err))
			continue
		}
		used[dev] = true
	}
	return errors.Join(errs...)
}

// Attached lists the RBD volumes attached to a domain (live when it runs),
// not its root disk.
func (a *Libvirt) Attached(ctx context.Context, domain string) ([]string, error) {
	l, err := a.conn()
	if err != nil {
		return nil, err
	}
	dom, err := l.DomainLookupByName(domain)
	if err != nil {
		return nil, fmt.Errorf("domain %q: %w", domain, err)
	}
	have, _, err := attached(l, dom, 0)
	if err != nil {
		return nil, err
	}
	var out []string
	for src, disk := range have {
		if disk.Target != nil && devRE.MatchString(disk.Target.Dev) {
			out = append(out, src)
		}
	}
	slices.Sort(out)
	return out, nil
}

// ParseMonHost turns Ceph's "mon host" value ("[v2:IP:P,v1:IP:P2] ..." or
// "IP:P,...") into the v1 addresses qemu's rbd driver is handed.
func ParseMonHost(s string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == ';' }) {
		f = strings.Trim(f, "[]")
		if strings.HasPrefix(f, "v2:") {
			continue
		}
		f = strings.TrimPrefix(f, "v1:")
		f, _, _ = strings.Cut(f, "/") // a nonce
		ap, err := netip.ParseAddrPort(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("mon host %q: %q is not an address", s, f)
			}
			ap = netip.AddrPortFrom(a, 6789)
		}
		out = append(out, ap)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("mon host %q: no v1 monitor address", s)
	}
	return out, nil
}

// Grow tells a running domain that an attached volume is now size bytes
// (after the storage controller grew the image), so the guest sees the new
// size at once: qemu's rbd driver does not watch the image's size itself.
// A domain that does not run, or does not have the volume, is left alone.
func (a *Libvirt) Grow(ctx context.Context, domain string, v Volume, size uint64) error {
	l, err := a.conn()
	if err != nil {
		return err
	}
	dom, err := l.DomainLookupByName(domain)
	if err != nil {
		return fmt.Errorf("domain %q: %w", domain, err)
	}
	state, _, err := l.DomainGetState(dom, 0)
	if err != nil || golibvirt.DomainState(state) != golibvirt.DomainRunning && golibvirt.DomainState(state) != golibvirt.DomainPaused {
		return err
	}
	have, _, err := attached(l, dom, 0)
	if err != nil {
		return err
	}
	disk, ok := have[v.source()]
	if !ok || disk.Target == nil {
		return nil
	}
	_, capacity, _, err := l.DomainGetBlockInfo(dom, disk.Target.Dev, 0)
	if err == nil && capacity >= size {
		return nil
	}
	if err := l.DomainBlockResize(dom, disk.Target.Dev, size, golibvirt.DomainBlockResizeBytes); err != nil {
		return fmt.Errorf("grow %s on %q to %d bytes: %w", v.source(), domain, size, err)
	}
	return nil
}
