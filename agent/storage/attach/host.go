package attach

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"libvirt.org/go/libvirtxml"

	"github.com/strata-infra/strata/pkg/computespec"
)

// Claimer fences other writers off an image before this host opens it
// (rbd.Conn.Claim), returning the dead lock owners it broke.
type Claimer func(pool, image string) ([]string, error)

// Host is the compute driver's door to volumes (compute.Volumes): librbd
// disks through libvirt, each claimed before this host's qemu opens it.
type Host struct {
	lv    *Libvirt
	claim Claimer
	log   *slog.Logger

	mu       sync.Mutex
	secretOK bool
}

// NewHost wraps an attacher with the host's claim.
func NewHost(lv *Libvirt, claim Claimer, log *slog.Logger) *Host {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Host{lv: lv, claim: claim, log: log.With("subsystem", "volumes")}
	lv.claim = func(ctx context.Context, v Volume) error { return h.claimRef(v.Pool, v.Image) }
	return h
}

func volumeOf(v computespec.Volume) Volume {
	return Volume{Pool: v.Pool, Image: v.Image, Serial: v.Serial}
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
	if err := h.ensureSecret(ctx); err != nil {
		return err
	}
	vs := make([]Volume, len(want))
	for i, v := range want {
		vs[i] = volumeOf(v)
	}
	return h.lv.Set(ctx, domain, vs)
}

// Grow tells a running domain that v grew.
func (h *Host) Grow(ctx context.Context, domain string, v computespec.Volume) error {
	return h.lv.Grow(ctx, domain, volumeOf(v), v.SizeBytes)
}

// Ready defines the cephx secret, for a guest arriving by live migration
// with its disks on RBD.
func (h *Host) Ready(ctx context.Context) error { return h.ensureSecret(ctx) }
