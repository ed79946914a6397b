package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/rbd"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// Volume states in status.
const (
	StateAvailable = "available"
	StateError     = "error"
	StatePending   = "pending" // waits for its source
)

// apply converges snapshots and volumes (sources before clones) and
// returns their statuses and the failures.
func (c *Controller) apply(ctx context.Context, p Pool, d desiredState) ([]api.ResourceReport, []string) {
	now := time.Now().UTC()
	var reports []api.ResourceReport
	var failed []string
	report := func(k api.Key, epoch uint64, state, msg string, st *rbd.ImageStatus) {
		rs := api.ResourceStatus{State: state, Message: msg, Epoch: epoch, Updated: now}
		if st != nil {
			rs.Detail = detail(c.cfg.Host, *st)
		}
		reports = append(reports, api.ResourceReport{Key: k, ResourceStatus: rs})
		if state == StateError {
			failed = append(failed, fmt.Sprintf("%s: %s", k, msg))
		}
	}
	// A volume's snapshots are taken right after the volume is made, so
	// that clones of them (which come later in the order) find them.
	snapsOf := map[rbd.Ref][]snapshot{}
	for _, sn := range d.Snapshots {
		if sn.Err != "" {
			report(sn.Key, sn.Epoch, StateError, sn.Err, nil)
			continue
		}
		img := rbd.Ref{Pool: sn.Ref.Pool, Image: sn.Ref.Image}
		snapsOf[img] = append(snapsOf[img], sn)
	}
	made := map[api.Key]bool{}
	for _, v := range d.Volumes {
		if ctx.Err() != nil {
			break
		}
		if v.Err != "" {
			report(v.Key, v.Epoch, StateError, v.Err, nil)
			continue
		}
		if v.ParentOfVolume != nil && !made[*v.ParentOfVolume] {
			report(v.Key, v.Epoch, StatePending, fmt.Sprintf("waits for volume %q", v.ParentOfVolume.Name), nil)
			continue
		}
		st, err := c.ensureVolume(p, v)
		if err != nil {
			report(v.Key, v.Epoch, StateError, err.Error(), nil)
			continue
		}
		made[v.Key] = true
		report(v.Key, v.Epoch, StateAvailable, "", &st)
		for _, sn := range snapsOf[v.Ref] {
			if sn.KRBD && !hasSnap(st, sn.Ref.Snap) {
				if held, err := krbdHeld(p, v.Ref, true); err != nil || held != "" {
					report(sn.Key, sn.Epoch, StatePending, cmp.Or(held, fmt.Sprint(err)), nil)
					continue
				}
			}
			if err := p.Snapshot(sn.Ref, true); err != nil {
				report(sn.Key, sn.Epoch, StateError, err.Error(), nil)
				continue
			}
			report(sn.Key, sn.Epoch, StateAvailable, "", nil)
		}
		delete(snapsOf, v.Ref)
	}
	for _, sns := range snapsOf {
		for _, sn := range sns {
			report(sn.Key, sn.Epoch, StatePending, "waits for its volume", nil)
		}
	}
	return reports, failed
}

// ensureVolume makes the volume's image if it is missing (empty, or a
// clone of its parent snapshot), grows it to the wanted size, and flattens
// it when asked to or when its clone chain is too deep.
func (c *Controller) ensureVolume(p Pool, v volume) (rbd.ImageStatus, error) {
	st, err := p.Status(v.Ref)
	if errors.Is(err, rbd.ErrNotFound) {
		if v.SourceGone != "" {
			return st, fmt.Errorf("cannot be made: %s", v.SourceGone)
		}
		if err := c.create(p, v); err != nil {
			return st, err
		}
		st, err = p.Status(v.Ref)
	}
	if err != nil {
		return st, err
	}
	if st.Owner == "" {
		// A create that died before tagging it: Create adopts it.
		if err := p.Create(v.Ref, v.Size, v.Owner); err != nil {
			return st, err
		}
		st.Owner = v.Owner
	}
	if st.Owner != v.Owner {
		return st, fmt.Errorf("image %s belongs to %q: %w", v.Ref, st.Owner, rbd.ErrNotOwned)
	}
	if st.Size < v.Size {
		// Online for an attached volume: librbd tells the qemu that has it open.
		if err := p.Resize(v.Ref, v.Size); err != nil {
			return st, err
		}
		st.Size = v.Size
	}
	if st.Parent != nil && (v.Flatten || st.Depth > storagespec.MaxCloneDepth) {
		if err := c.flatten(p, v.Key, v.Ref); err != nil {
			return st, err
		}
		c.cfg.Logger.Info("flattened volume", "volume", v.Key, "depth", st.Depth, "asked", v.Flatten)
		if st, err = p.Status(v.Ref); err != nil {
			return st, err
		}
	}
	return st, nil
}

func (c *Controller) create(p Pool, v volume) error {
	if v.Parent == nil {
		return p.Create(v.Ref, v.Size, v.Owner)
	}
	if v.ParentOfVolume != nil {
		// A clone of a volume goes through a snapshot of its own.
		if err := p.Snapshot(*v.Parent, true); err != nil {
			return err
		}
	}
	if err := p.Clone(*v.Parent, v.Ref, v.Owner); err != nil {
		return err
	}
	// A clone starts at its parent's size; grow it to what was asked.
	return p.Resize(v.Ref, v.Size)
}

// prune deletes the Strata volumes no longer in the plan (flattening any
// clone still hanging on them) and their snapshots no longer wanted. Only
// images named and tagged as Strata's are touched.
func (c *Controller) prune(p Pool, d desiredState) error {
	wantImage := map[rbd.Ref]bool{}
	for _, im := range d.Images {
		wantImage[im] = true
	}
	wantSnap := map[rbd.Ref]bool{}
	for _, v := range d.Volumes {
		wantImage[v.Ref] = true
		if v.ParentOfVolume != nil && v.Parent != nil {
			wantSnap[*v.Parent] = true
		}
	}
	for _, s := range d.Snapshots {
		wantSnap[s.Ref] = true
	}
	var errs []string
	for _, pool := range d.Pools {
		names, err := p.List(pool)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		for _, n := range names {
			if !isStrata(n) {
				continue
			}
			ref := rbd.Ref{Pool: pool, Image: n}
			st, err := p.Status(ref)
			if errors.Is(err, rbd.ErrNotFound) {
				continue
			}
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
			if !strings.HasPrefix(st.Owner, storagespec.OwnerPrefix+"volume/") && !strings.HasPrefix(st.Owner, storagespec.OwnerPrefix+"image/") {
				continue // not ours
			}
			if !wantImage[ref] {
				if held, err := krbdHeld(p, ref, false); err != nil || held != "" {
					errs = append(errs, fmt.Sprintf("delete %s waits: %s", ref, cmp.Or(held, fmt.Sprint(err))))
					continue
				}
				if err := p.Remove(ref, st.Owner, true); err != nil {
					errs = append(errs, err.Error())
				} else {
					c.cfg.Logger.Info("deleted volume image", "image", ref, "owner", st.Owner)
				}
				continue
			}
			for _, s := range st.Snapshots {
				sref := rbd.Ref{Pool: pool, Image: n, Snap: s.Name}
				if wantSnap[sref] || !(strings.HasPrefix(s.Name, "snap-") || strings.HasPrefix(s.Name, "clone-")) {
					continue
				}
				for _, ch := range s.Children {
					// Its clones keep their data: flatten them before the
					// snapshot goes.
					if err := c.flatten(p, api.Key{Kind: "rbd", Name: ch.String()}, ch); err != nil {
						errs = append(errs, err.Error())
					}
				}
				if err := p.RemoveSnapshot(sref); err != nil {
					errs = append(errs, err.Error())
				}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("prune: %s", strings.Join(errs, "; "))
	}
	return nil
}

// flatten copies a clone's parent data in, logging a progress line (bytes
// copied so far, of the size) every ProgressInterval while it runs: a
// flatten of a large volume takes minutes.
func (c *Controller) flatten(p Pool, key api.Key, r rbd.Ref) error {
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(c.cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				attrs := []any{"volume", key, "image", r.String(), "elapsed", time.Since(start).Round(time.Second)}
				if st, err := p.Status(r); err == nil {
					attrs = append(attrs, "copied_bytes", st.Used, "size_bytes", st.Size)
				}
				c.cfg.Logger.Info("flattening", attrs...)
			}
		}
	}()
	err := p.Flatten(r)
	close(done)
	<-finished
	if err == nil {
		c.cfg.Logger.Info("flattened", "volume", key, "image", r.String(), "took", time.Since(start).Round(time.Millisecond))
	}
	return err
}

// krbdHeld says, when a host still holds the image, why the controller
// does not act on it: a krbd volume's host holds the exclusive lock
// (librbd could not take it for a snapshot) and, with a writeback cache,
// writes Ceph has not seen yet. A snapshot is that host's to take
// (package mappedsnap: its cache written back, its writes held); a delete
// waits until the host flushes the cache (zero dirty blocks) and unmaps
// the image, once no instance has the volume. Deleting an image a writer
// still holds would fail the same way, so that wait applies to every
// volume. (Watchers would count this controller's own open of the image;
// the lock owner is the writer: a krbd mapping takes it when it maps.)
func krbdHeld(p Pool, r rbd.Ref, snapshot bool) (string, error) {
	_, owners, err := p.Holders(r)
	if err != nil {
		return "", err
	}
	if len(owners) == 0 {
		return "", nil
	}
	if snapshot {
		return fmt.Sprintf("taken by the host that maps %s (lock owner %s): it writes its cache back, holds the volume's writes and makes the snapshot; that host's status says how far",
			r, strings.Join(owners, ", ")), nil
	}
	return fmt.Sprintf("waits until no host holds %s (locked by %s): a krbd volume's host flushes its cache to zero dirty blocks and unmaps it once no instance has it (detach the volume)",
		r, strings.Join(owners, ", ")), nil
}

func hasSnap(st rbd.ImageStatus, name string) bool {
	for _, s := range st.Snapshots {
		if s.Name == name {
			return true
		}
	}
	return false
}
