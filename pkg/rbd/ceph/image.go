//go:build pacific

package ceph

import (
	"errors"
	"fmt"

	"github.com/ceph/go-ceph/rados"
	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/strata-infra/strata/pkg/rbd"
)

// Features of every image Strata makes: layering for copy-on-write clones,
// exclusive-lock so two hosts never write one image at once, object-map and
// fast-diff for cheap usage and flatten, deep-flatten so a flattened clone
// also drops its snapshots' parent references.
const features = librbd.FeatureLayering | librbd.FeatureExclusiveLock | librbd.FeatureObjectMap |
	librbd.FeatureFastDiff | librbd.FeatureDeepFlatten

func imageOptions() *librbd.ImageOptions {
	o := librbd.NewRbdImageOptions()
	o.SetUint64(librbd.ImageOptionFeatures, features)
	o.SetUint64(librbd.ImageOptionOrder, 22) // 4 MiB objects
	return o
}

// Create makes an empty image of size bytes owned by owner. It is
// idempotent: an image of that name with the same owner is success.
func (c *Conn) Create(r rbd.Ref, size uint64, owner string) error {
	io, err := c.ioctx(r.Pool)
	if err != nil {
		return err
	}
	defer io.Destroy()
	o := imageOptions()
	defer o.Destroy()
	err = librbd.CreateImage(io, r.Image, size, o)
	if err != nil && errors.Is(mapErr(r, err), rbd.ErrExists) {
		if err = c.checkOwner(r, owner); !errors.Is(err, rbd.ErrNotFound) {
			return err
		}
		// Listed but not openable: a create killed half-way (the name is
		// in the pool's directory, the header is not). It holds no data:
		// remove what there is and create again.
		if err := c.removeHalfMade(io, r); err != nil {
			return err
		}
		err = librbd.CreateImage(io, r.Image, size, o)
	}
	if err != nil {
		return mapErr(r, err)
	}
	return c.setOwner(r, owner)
}

// removeHalfMade removes the remains of an image whose creation died.
func (c *Conn) removeHalfMade(io *rados.IOContext, r rbd.Ref) error {
	if err := librbd.RemoveImage(io, r.Image); err != nil && !errors.Is(mapErr(r, err), rbd.ErrNotFound) {
		return fmt.Errorf("remove the remains of a half-made %s: %w", r, mapErr(r, err))
	}
	return nil
}

// Clone makes child a copy-on-write clone of parent's snapshot (which is
// protected first if it is not). Idempotent like Create.
func (c *Conn) Clone(parent, child rbd.Ref, owner string) error {
	if parent.Snap == "" {
		return fmt.Errorf("clone %s from %s: the parent needs a snapshot", child, parent)
	}
	if err := c.protect(parent); err != nil {
		return err
	}
	pio, err := c.ioctx(parent.Pool)
	if err != nil {
		return err
	}
	defer pio.Destroy()
	cio, err := c.ioctx(child.Pool)
	if err != nil {
		return err
	}
	defer cio.Destroy()
	o := imageOptions()
	defer o.Destroy()
	err = librbd.CloneImage(pio, parent.Image, parent.Snap, cio, child.Image, o)
	if err != nil && errors.Is(mapErr(child, err), rbd.ErrExists) {
		if err = c.checkOwner(child, owner); !errors.Is(err, rbd.ErrNotFound) {
			return err
		}
		if err := c.removeHalfMade(cio, child); err != nil {
			return err
		}
		err = librbd.CloneImage(pio, parent.Image, parent.Snap, cio, child.Image, o)
	}
	if err != nil {
		return fmt.Errorf("clone %s from %s: %w", child, parent, mapErr(child, err))
	}
	return c.setOwner(child, owner)
}

// Copy makes dst a full, independent copy of src (the baseline a clone is
// measured against, and what a copy between clusters would be).
func (c *Conn) Copy(src, dst rbd.Ref, owner string) error {
	img, done, err := c.open(src)
	if err != nil {
		return err
	}
	defer done()
	io, err := c.ioctx(dst.Pool)
	if err != nil {
		return err
	}
	defer io.Destroy()
	if err := img.Copy(io, dst.Image); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, mapErr(dst, err))
	}
	return c.setOwner(dst, owner)
}

// Resize grows an image to size bytes; growing to the current size is
// success and a smaller size is rbd.ErrShrink, before anything changes. An
// attached volume grows online: librbd tells the running qemu.
func (c *Conn) Resize(r rbd.Ref, size uint64) error {
	img, done, err := c.open(r)
	if err != nil {
		return err
	}
	defer done()
	cur, err := img.GetSize()
	if err != nil {
		return mapErr(r, err)
	}
	switch {
	case size == cur:
		return nil
	case size < cur:
		return fmt.Errorf("resize %s from %d to %d bytes: %w", r, cur, size, rbd.ErrShrink)
	}
	if err := img.Resize(size); err != nil {
		return fmt.Errorf("resize %s: %w", r, mapErr(r, err))
	}
	return nil
}

// Flatten copies the parent's data into a clone so it no longer depends on
// it. A clone without a parent is success.
func (c *Conn) Flatten(r rbd.Ref) error {
	img, done, err := c.open(r)
	if err != nil {
		return err
	}
	defer done()
	if _, err := img.GetParent(); err != nil {
		if errors.Is(mapErr(r, err), rbd.ErrNotFound) {
			return nil // no parent
		}
		return mapErr(r, err)
	}
	if err := img.Flatten(); err != nil {
		return fmt.Errorf("flatten %s: %w", r, mapErr(r, err))
	}
	return nil
}

// Remove deletes an image with all its snapshots. It refuses while the
// image has watchers (rbd.ErrInUse) or while clones depend on one of its
// snapshots (rbd.ErrHasChildren), unless flattenChildren, which flattens them
// first. An image that is not there is success; one with another owner is
// rbd.ErrNotOwned (an empty owner skips the check).
func (c *Conn) Remove(r rbd.Ref, owner string, flattenChildren bool) error {
	st, err := c.Status(r)
	if errors.Is(err, rbd.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if owner != "" && st.Owner != owner {
		return fmt.Errorf("remove %s (owner %q, want %q): %w", r, st.Owner, owner, rbd.ErrNotOwned)
	}
	if len(st.Watchers) > 0 {
		return fmt.Errorf("remove %s: watched by %v: %w", r, st.Watchers, rbd.ErrInUse)
	}
	var children []rbd.Ref
	for _, s := range st.Snapshots {
		children = append(children, s.Children...)
	}
	if len(children) > 0 && !flattenChildren {
		return fmt.Errorf("remove %s: clones %v: %w", r, children, rbd.ErrHasChildren)
	}
	for _, ch := range children {
		if err := c.Flatten(ch); err != nil {
			return err
		}
	}
	for _, s := range st.Snapshots {
		if err := c.RemoveSnapshot(rbd.Ref{Pool: r.Pool, Image: r.Image, Snap: s.Name}); err != nil {
			return err
		}
	}
	io, err := c.ioctx(r.Pool)
	if err != nil {
		return err
	}
	defer io.Destroy()
	if err := librbd.RemoveImage(io, r.Image); err != nil {
		if err = mapErr(r, err); errors.Is(err, rbd.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", r, err)
	}
	return nil
}

func (c *Conn) setOwner(r rbd.Ref, owner string) error {
	img, done, err := c.open(r)
	if err != nil {
		return err
	}
	defer done()
	if err := img.SetMetadata(rbd.OwnerKey, owner); err != nil {
		return fmt.Errorf("tag %s with its owner: %w", r, mapErr(r, err))
	}
	return nil
}

func (c *Conn) checkOwner(r rbd.Ref, owner string) error {
	img, done, err := c.open(r)
	if err != nil {
		return err
	}
	defer done()
	got, err := img.GetMetadata(rbd.OwnerKey)
	if err != nil && !errors.Is(mapErr(r, err), rbd.ErrNotFound) {
		return mapErr(r, err)
	}
	switch got {
	case owner:
		return nil
	case "":
		// Made by a create that died before it tagged the image (the two
		// are separate librbd calls): the name is the owner's, adopt it.
		if err := img.SetMetadata(rbd.OwnerKey, owner); err != nil {
			return fmt.Errorf("tag %s with its owner: %w", r, mapErr(r, err))
		}
		return nil
	}
	return fmt.Errorf("image %s (owner %q, want %q): %w", r, got, owner, rbd.ErrNotOwned)
}
