//go:build pacific

package ceph

import (
	"errors"
	"fmt"

	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/strata-infra/strata/pkg/rbd"
)

// Snapshot makes snapshot r.Snap of r.Image, protected when protect (so
// that clones can be made from it). An existing snapshot is success.
func (c *Conn) Snapshot(r rbd.Ref, protect bool) error {
	if r.Snap == "" {
		return fmt.Errorf("snapshot of %s: no snapshot name", r)
	}
	img, done, err := c.open(rbd.Ref{Pool: r.Pool, Image: r.Image})
	if err != nil {
		return err
	}
	defer done()
	if _, err := img.CreateSnapshot(r.Snap); err != nil && !errors.Is(mapErr(r, err), rbd.ErrExists) {
		return fmt.Errorf("snapshot %s: %w", r, mapErr(r, err))
	}
	if !protect {
		return nil
	}
	return protectOpen(img, r)
}

func (c *Conn) protect(r rbd.Ref) error {
	img, done, err := c.open(rbd.Ref{Pool: r.Pool, Image: r.Image})
	if err != nil {
		return err
	}
	defer done()
	return protectOpen(img, r)
}

func protectOpen(img *librbd.Image, r rbd.Ref) error {
	s := img.GetSnapshot(r.Snap)
	ok, err := s.IsProtected()
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", r, mapErr(r, err))
	}
	if ok {
		return nil
	}
	if err := s.Protect(); err != nil {
		return fmt.Errorf("protect snapshot %s: %w", r, mapErr(r, err))
	}
	return nil
}

// RemoveSnapshot unprotects and deletes a snapshot; it refuses while clones
// depend on it (rbd.ErrHasChildren). A missing snapshot is success.
func (c *Conn) RemoveSnapshot(r rbd.Ref) error {
	st, err := c.Status(rbd.Ref{Pool: r.Pool, Image: r.Image})
	if errors.Is(err, rbd.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var snap *rbd.Snap
	for i := range st.Snapshots {
		if st.Snapshots[i].Name == r.Snap {
			snap = &st.Snapshots[i]
		}
	}
	if snap == nil {
		return nil
	}
	if len(snap.Children) > 0 {
		return fmt.Errorf("remove snapshot %s: clones %v: %w", r, snap.Children, rbd.ErrHasChildren)
	}
	img, done, err := c.open(rbd.Ref{Pool: r.Pool, Image: r.Image})
	if err != nil {
		return err
	}
	defer done()
	s := img.GetSnapshot(r.Snap)
	if snap.Protected {
		if err := s.Unprotect(); err != nil {
			return fmt.Errorf("unprotect snapshot %s: %w", r, mapErr(r, err))
		}
	}
	if err := s.Remove(); err != nil && !errors.Is(mapErr(r, err), rbd.ErrNotFound) {
		return fmt.Errorf("remove snapshot %s: %w", r, mapErr(r, err))
	}
	return nil
}

// Status reads an image's size, usage, parent and clone depth, snapshots
// with their clones, watchers and exclusive-lock owners.
func (c *Conn) Status(r rbd.Ref) (rbd.ImageStatus, error) {
	r.Snap = ""
	st := rbd.ImageStatus{Ref: r}
	img, done, err := c.open(r)
	if err != nil {
		return st, err
	}
	defer done()
	if st.Size, err = img.GetSize(); err != nil {
		return st, mapErr(r, err)
	}
	if st.Owner, err = img.GetMetadata(rbd.OwnerKey); err != nil && !errors.Is(mapErr(r, err), rbd.ErrNotFound) {
		return st, mapErr(r, err)
	}
	if st.Used, err = used(img, st.Size); err != nil {
		return st, fmt.Errorf("usage of %s: %w", r, mapErr(r, err))
	}
	if p, err := img.GetParent(); err == nil {
		st.Parent = &rbd.Ref{Pool: p.Image.PoolName, Image: p.Image.ImageName, Snap: p.Snap.SnapName}
		st.Depth = 1
		if ps, err := c.Status(rbd.Ref{Pool: p.Image.PoolName, Image: p.Image.ImageName}); err == nil {
			st.Depth += ps.Depth
		}
	} else if !errors.Is(mapErr(r, err), rbd.ErrNotFound) {
		return st, mapErr(r, err)
	}
	ws, err := img.ListWatchers()
	if err != nil {
		return st, fmt.Errorf("watchers of %s: %w", r, mapErr(r, err))
	}
	self := int64(c.rados.GetInstanceID())
	for _, w := range ws {
		if w.Id == self {
			continue // this connection's own handle, opened to read the status
		}
		st.Watchers = append(st.Watchers, w.Addr)
	}
	owners, err := img.LockGetOwners()
	if err != nil {
		return st, fmt.Errorf("lock owners of %s: %w", r, mapErr(r, err))
	}
	for _, o := range owners {
		st.LockOwners = append(st.LockOwners, o.Owner)
	}
	snaps, err := img.GetSnapshotNames()
	if err != nil {
		return st, fmt.Errorf("snapshots of %s: %w", r, mapErr(r, err))
	}
	for _, s := range snaps {
		sn := rbd.Snap{Name: s.Name, Size: s.Size}
		if sn.Protected, err = img.GetSnapshot(s.Name).IsProtected(); err != nil {
			return st, mapErr(r, err)
		}
		if sn.Children, err = c.children(rbd.Ref{Pool: r.Pool, Image: r.Image, Snap: s.Name}); err != nil {
			return st, err
		}
		st.Snapshots = append(st.Snapshots, sn)
	}
	return st, nil
}

// children lists the clones of snapshot r that are not in the trash.
func (c *Conn) children(r rbd.Ref) ([]rbd.Ref, error) {
	io, err := c.ioctx(r.Pool)
	if err != nil {
		return nil, err
	}
	defer io.Destroy()
	img, err := librbd.OpenImageReadOnly(io, r.Image, r.Snap)
	if err != nil {
		return nil, mapErr(r, err)
	}
	defer img.Close()
	specs, err := img.ListChildrenAttributes()
	if err != nil {
		return nil, fmt.Errorf("clones of %s: %w", r, mapErr(r, err))
	}
	var out []rbd.Ref
	for _, s := range specs {
		if !s.Trash {
			out = append(out, rbd.Ref{Pool: s.PoolName, Image: s.ImageName})
		}
	}
	return out, nil
}

// used sums the extents allocated in the image itself (fast with the
// fast-diff feature: read from the object map).
func used(img *librbd.Image, size uint64) (uint64, error) {
	if size == 0 {
		return 0, nil
	}
	var n uint64
	err := img.DiffIterate(librbd.DiffIterateConfig{
		Length: size, IncludeParent: librbd.ExcludeParent, WholeObject: librbd.EnableWholeObject,
		Callback: func(_, length uint64, exists int, _ interface{}) int {
			if exists != 0 {
				n += length
			}
			return 0
		},
	})
	return n, err
}
