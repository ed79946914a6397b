package attach

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"libvirt.org/go/libvirtxml"

	"github.com/strata-infra/strata/agent/storage/cachedvol"
	"github.com/strata-infra/strata/pkg/computespec"
)

// Claimer fences other writers off an image before this host opens it
// (rbd.Conn.Claim), returning the dead lock owners it broke.
type Claimer func(pool, image string) ([]string, error)

// Host is the compute driver's door to volumes (compute.Volumes): librbd
// disks through libvirt, each claimed before this host's qemu opens it,
// and krbd volumes as block disks on the device the Kernel maps (with
// its cache), detached from the host once no domain has them (Release).
type Host struct {
	lv    *Libvirt
	claim Claimer
	log   *slog.Logger
	// kernel maps krbd volumes; nil on a host without krbd, where they
	// are refused.
	kernel Kernel

	mu       sync.Mutex
	secretOK bool

	// rmu guards the releases of krbd volumes, each run on its own
	// (Release): those under way, and the errors of those that failed,
	// until the next Release reports them; and the write-backs before
	// their unplugs (drainBeforeUnplug): under way, done, failed. released
	// is called as each ends.
	rmu       sync.Mutex
	releasing map[string]bool
	failed    map[string]error
	draining  map[string]uint64 // the write-back's run, of drainRun
	drained   map[string]error  // nil: done, the disk may go
	drainRun  uint64
	wg        sync.WaitGroup
	released  func()
}

// NewHost wraps an attacher with the host's claim.
func NewHost(lv *Libvirt, claim Claimer, log *slog.Logger) *Host {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Host{lv: lv, claim: claim, log: log.With("subsystem", "volumes"), releasing: map[string]bool{}, failed: map[string]error{},
		draining: map[string]uint64{}, drained: map[string]error{}}
	lv.claim = h.claimAttach
	lv.beforeUnplug = h.drainBeforeUnplug
	return h
}

// UseKernel makes h attach krbd volumes through k.
func (h *Host) UseKernel(k Kernel) { h.kernel = k }

func volumeOf(v computespec.Volume) Volume {
	out := Volume{Pool: v.Pool, Image: v.Image, Serial: v.Serial, Cached: cachedVolume(v)}
	if out.Cached != nil {
		out.Dev = cachedvol.DevicePath(out.Cached.Name)
	}
	return out
}

// claimAttach runs before a volume is attached to a domain: it fences
// other writers off the image and, for a krbd volume, maps it and
// assembles its cache (an image this host has mapped already is its own:
// no claim, which would find the mapping holding the lock).
func (h *Host) claimAttach(ctx context.Context, v Volume) error {
	if v.Cached == nil {
		return h.claimRef(v.Pool, v.Image)
	}
	if h.kernel == nil {
		return fmt.Errorf("volume %s/%s is a krbd volume: this host has no krbd (the kernel lacks the rbd module, or no Ceph is configured)", v.Pool, v.Image)
	}
	recs, err := h.kernel.Records()
	if err != nil {
		return err
	}
	mine := false
	for _, r := range recs {
		mine = mine || r.Volume == v.Cached.Name
	}
	if !mine {
		if err := h.claimRef(v.Pool, v.Image); err != nil {
			return err
		}
	}
	dev, err := h.kernel.Attach(ctx, *v.Cached)
	if err != nil {
		return fmt.Errorf("map %s/%s: %w", v.Pool, v.Image, err)
	}
	if dev != v.Dev {
		return fmt.Errorf("map %s/%s: the device is %s, not %s", v.Pool, v.Image, dev, v.Dev)
	}
	return nil
}

// RootDisk is the instance's RBD root disk, vda.
func (h *Host) RootDisk(v computespec.Volume) libvirtxml.DomainDisk {
	return h.lv.DiskXML(volumeOf(v), "vda")
}

// ensureSecret defines the cephx secret in libvirt once (again after a failure).
func (h *Host) ensureSecret(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.secretOK {
		return nil
	}
	if err := h.lv.EnsureSecret(ctx); err != nil {
		return err
	}
	h.secretOK = true
	return nil
}

func (h *Host) claimRef(pool, image string) error {
	broke, err := h.claim(pool, image)
	if len(broke) > 0 {
		h.log.Warn("broke the exclusive lock of a dead client (blocklisted first)", "image", pool+"/"+image, "owners", broke)
	}
	if err != nil {
		return fmt.Errorf("claim %s/%s: %w", pool, image, err)
	}
	return nil
}

// Claim fences other writers off v; the secret qemu needs is made first.
func (h *Host) Claim(ctx context.Context, v computespec.Volume) error {
	if err := h.ensureSecret(ctx); err != nil {
		return err
	}
	return h.claimRef(v.Pool, v.Image)
}

// Set makes the domain's attached volumes exactly want.
func (h *Host) Set(ctx context.Context, domain string, want []computespec.Volume) error {
	h.wantedAgain(want)
	if err := h.ensureSecret(ctx); err != nil {
		return err
	}
	vs := make([]Volume, len(want))
	for i, v := range want {
		vs[i] = volumeOf(v)
	}
	return h.lv.Set(ctx, domain, vs)
}

// wantedAgain forgets the write-backs before an unplug of the volumes a
// domain wants (again): they were for a detach called off, and one still
// running reports to nobody.
func (h *Host) wantedAgain(want []computespec.Volume) {
	h.rmu.Lock()
	defer h.rmu.Unlock()
	for _, v := range want {
		delete(h.drained, v.Image)
		delete(h.draining, v.Image)
	}
}

// Grow tells a running domain that v grew.
func (h *Host) Grow(ctx context.Context, domain string, v computespec.Volume) error {
	return h.lv.Grow(ctx, domain, volumeOf(v), v.SizeBytes)
}

// Ready defines the cephx secret, for a guest arriving by live migration
// with its disks on RBD.
func (h *Host) Ready(ctx context.Context) error { return h.ensureSecret(ctx) }
