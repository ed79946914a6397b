//go:build pacific

// Package ceph is the RBD driver itself, through librados and librbd with
// go-ceph (build tag `pacific`: Debian 12's Ceph 16.2, cgo headers from
// librados-dev and librbd-dev). Only the strata-rbd helper links it;
// strata-agent and stratactl reach it through rbd.Conn, so neither loads
// the Ceph libraries.
package ceph

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"
	librbd "github.com/ceph/go-ceph/rbd"

	"github.com/strata-infra/strata/pkg/rbd"
)

// Conn is one connection to the cluster as the configured cephx user.
type Conn struct {
	cfg   rbd.Config
	rados *rados.Conn
}

// Connect opens a connection; it fails when the monitors are unreachable
// or refuse the user within the timeout.
func Connect(cfg rbd.Config) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	c, err := rados.NewConnWithUser(cfg.User)
	if err != nil {
		return nil, fmt.Errorf("ceph client %q: %w", cfg.User, err)
	}
	secs := strconv.Itoa(int(cfg.Timeout.Seconds()))
	for k, v := range map[string]string{
		"mon_host": cfg.MonHost, "keyring": cfg.Keyring,
		"client_mount_timeout": secs, "rados_mon_op_timeout": secs, "rados_osd_op_timeout": secs,
		// librbd's persistent write-back cache plugin is not in Debian's
		// librbd: naming it would make every image open fail.
		"rbd_plugins": "",
	} {
		if err := c.SetConfigOption(k, v); err != nil {
			c.Shutdown()
			return nil, fmt.Errorf("ceph option %s: %w", k, err)
		}
	}
	if err := c.Connect(); err != nil {
		c.Shutdown()
		return nil, fmt.Errorf("connect to ceph monitors %s as client.%s: %w", cfg.MonHost, cfg.User, err)
	}
	return &Conn{cfg: cfg, rados: c}, nil
}

// Close ends the connection.
func (c *Conn) Close() { c.rados.Shutdown() }

// CheckPool reports whether pool exists and the user may list its images.
func (c *Conn) CheckPool(pool string) error {
	io, err := c.ioctx(pool)
	if err != nil {
		return err
	}
	defer io.Destroy()
	if _, err := librbd.GetImageNames(io); err != nil {
		return fmt.Errorf("list images in pool %q: %w", pool, err)
	}
	return nil
}

// List returns the names of the images in pool.
func (c *Conn) List(pool string) ([]string, error) {
	io, err := c.ioctx(pool)
	if err != nil {
		return nil, err
	}
	defer io.Destroy()
	names, err := librbd.GetImageNames(io)
	if err != nil {
		return nil, fmt.Errorf("list images in pool %q: %w", pool, err)
	}
	return names, nil
}

func (c *Conn) ioctx(pool string) (*rados.IOContext, error) {
	io, err := c.rados.OpenIOContext(pool)
	if err != nil {
		if errors.Is(err, rados.ErrNotFound) {
			return nil, fmt.Errorf("pool %q: %w", pool, rbd.ErrNotFound)
		}
		return nil, fmt.Errorf("pool %q: %w", pool, err)
	}
	return io, nil
}

// open opens r (at r.Snap when set); the caller closes image and ioctx
// through the returned func.
func (c *Conn) open(r rbd.Ref) (*librbd.Image, func(), error) {
	io, err := c.ioctx(r.Pool)
	if err != nil {
		return nil, nil, err
	}
	img, err := librbd.OpenImage(io, r.Image, librbd.NoSnapshot)
	if err != nil {
		io.Destroy()
		return nil, nil, mapErr(r, err)
	}
	return img, func() { img.Close(); io.Destroy() }, nil
}

// errnoOf is the errno a Ceph error carries, or 0.
func errnoOf(err error) syscall.Errno {
	var coded interface{ ErrorCode() int }
	if errors.As(err, &coded) {
		return syscall.Errno(-coded.ErrorCode())
	}
	return 0
}

// mapErr turns librbd's errnos into the package's errors, naming the image.
func mapErr(r rbd.Ref, err error) error {
	if e := errnoOf(err); e != 0 {
		switch e {
		case syscall.ENOENT:
			return fmt.Errorf("image %s: %w", r, rbd.ErrNotFound)
		case syscall.EEXIST:
			return fmt.Errorf("image %s: %w", r, rbd.ErrExists)
		case syscall.EBUSY:
			return fmt.Errorf("image %s: %w", r, rbd.ErrInUse)
		case syscall.ENOTEMPTY:
			return fmt.Errorf("image %s: %w", r, rbd.ErrHasChildren)
		}
	}
	if errors.Is(err, librbd.ErrNotFound) {
		return fmt.Errorf("image %s: %w", r, rbd.ErrNotFound)
	}
	return fmt.Errorf("image %s: %w", r, err)
}
