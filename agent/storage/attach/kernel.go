package attach

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/strata-infra/strata/agent/storage/cachedvol"
	"github.com/strata-infra/strata/agent/storage/dmcache"
	"github.com/strata-infra/strata/agent/storage/krbd"
	"github.com/strata-infra/strata/pkg/computespec"
)

// Kernel is the host's krbd volume manager (*cachedvol.Manager): it maps
// a volume and assembles its cache, and flushes, takes down and unmaps it
// once no domain has it.
type Kernel interface {
	Attach(ctx context.Context, v cachedvol.Volume) (string, error)
	Detach(ctx context.Context, volume string) error
	DrainForDetach(ctx context.Context, volume string) error
	Records() ([]*cachedvol.Record, error)
}

// kernelDevPrefix starts the path of every block device Kernel hands a
// domain; a block disk with another source is not Strata's.
var kernelDevPrefix = cachedvol.DevicePath("")

// cachedVolume is how the manager attaches v (a volume of a krbd type):
// named by its RBD image, unique on the host.
func cachedVolume(v computespec.Volume) *cachedvol.Volume {
	k := v.KRBD
	if k == nil {
		return nil
	}
	return &cachedvol.Volume{
		Name: v.Image, Image: krbd.Image{Pool: v.Pool, Name: v.Image},
		Mode: dmcache.Mode(k.CacheMode), CacheBytes: k.CacheBytes,
		Params: dmcache.Params{HighWatermark: k.HighWatermark, LowWatermark: k.LowWatermark,
			MaxAge: time.Duration(k.MaxDirtySeconds) * time.Second},
		FlushTimeout: time.Duration(k.FlushTimeoutSeconds) * time.Second,
	}
}

// KernelDisk maps a krbd volume (with its cache) as Set does before it
// hot-plugs it, and returns the disk the domain gets at target dev.
func (h *Host) KernelDisk(ctx context.Context, v computespec.Volume, dev string) (libvirtxml.DomainDisk, error) {
	av := volumeOf(v)
	if av.Cached == nil {
		return libvirtxml.DomainDisk{}, fmt.Errorf("volume %s/%s is not a krbd volume", v.Pool, v.Image)
	}
	if err := h.claimAttach(ctx, av); err != nil {
		return libvirtxml.DomainDisk{}, err
	}
	return h.lv.DiskXML(av, dev), nil
}

// isKernelDev says whether a block disk's source is one of Kernel's.
func isKernelDev(path string) bool { return strings.HasPrefix(path, kernelDevPrefix) }

// Release lets go of the krbd volumes of this host that no domain wants
// any more (keep lists every volume of every instance the host keeps):
// each is detached, its cache flushed first, on its own, so a flush of
// minutes holds up neither the compute pass that asked nor any other
// volume. Its progress is in the volume's status (cachedvol's flush); a
// detach that failed (a flush past its deadline, a volume still open: the
// guest has not let a hot-unplugged disk go) is reported by the next
// Release, which tries again. Its record stays, and so does its cache
// with every dirty block.
func (h *Host) Release(ctx context.Context, keep []computespec.Volume) error {
	if h.kernel == nil {
		return nil
	}
	recs, err := h.kernel.Records()
	if err != nil {
		return err
	}
	wanted := map[string]bool{}
	for _, v := range keep {
		if v.KRBD != nil {
			wanted[v.Image] = true
		}
	}
	h.rmu.Lock()
	defer h.rmu.Unlock()
	var errs []string
	for _, r := range recs {
		if err := h.failed[r.Volume]; err != nil {
			delete(h.failed, r.Volume)
			if !wanted[r.Volume] {
				errs = append(errs, err.Error())
			}
		}
		// A disk whose cache is being written back before its unplug is
		// still its domain's.
		if _, draining := h.draining[r.Volume]; wanted[r.Volume] || h.releasing[r.Volume] || draining {
			continue
		}
		h.log.Info("detaching a krbd volume no domain uses", "volume", r.Volume, "mode", r.Mode)
		h.releasing[r.Volume] = true
		volume := r.Volume
		h.beside(ctx, func(ctx context.Context) error { return h.kernel.Detach(ctx, volume) }, func(err error) {
			delete(h.releasing, volume)
			if err != nil {
				h.failed[volume] = err
				h.log.Error("detach a krbd volume", "volume", volume, "err", err)
			} else {
				h.log.Info("krbd volume detached", "volume", volume)
			}
		})
	}
	if len(errs) > 0 {
		return fmt.Errorf("release krbd volumes: %s", strings.Join(errs, "; "))
	}
	return nil
}

// beside runs f on its own, past the pass that asked (ctx's cancel does
// not reach it), then end with its error under rmu, then asks for the
// next pass (released); WaitReleases waits for it.
func (h *Host) beside(ctx context.Context, f func(context.Context) error, end func(error)) {
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		err := f(context.WithoutCancel(ctx))
		h.rmu.Lock()
		end(err)
		h.rmu.Unlock()
		if h.released != nil {
			h.released()
		}
	}()
}

// drainBeforeUnplug runs before a disk is unplugged from a running
// domain: for a krbd volume it writes the cache back first, on its own
// (DrainForDetach, up to the flush deadline), and says the disk may go
// once that is done. Until then the disk stays, and the pass goes on; a
// write-back that failed is returned (the disk stays with its domain,
// nothing dropped) and tried again by the next pass.
func (h *Host) drainBeforeUnplug(ctx context.Context, src string) (bool, error) {
	volume, ok := strings.CutPrefix(src, kernelDevPrefix)
	if !ok || h.kernel == nil {
		return true, nil
	}
	h.rmu.Lock()
	defer h.rmu.Unlock()
	if err, ok := h.drained[volume]; ok {
		delete(h.drained, volume)
		return err == nil, err
	}
	if _, running := h.draining[volume]; !running {
		h.drainRun++
		run := h.drainRun
		h.draining[volume] = run
		h.beside(ctx, func(ctx context.Context) error { return h.kernel.DrainForDetach(ctx, volume) }, func(err error) {
			if h.draining[volume] == run {
				delete(h.draining, volume)
				h.drained[volume] = err
			}
		})
	}
	return false, nil
}

// OnReleased makes h call f each time a volume's release, or its
// write-back before an unplug, ends, so the next pass comes soon: it
// unplugs the disk, reports a failure, or attaches the volume again if an
// instance wants it back.
func (h *Host) OnReleased(f func()) { h.released = f }

// WaitReleases waits for the releases under way to end and returns the
// errors of those that failed (the next Release reports them too).
func (h *Host) WaitReleases(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	h.rmu.Lock()
	defer h.rmu.Unlock()
	var errs []error
	for _, err := range h.failed {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
