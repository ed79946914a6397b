// Package krbd maps RBD images as kernel block devices (/dev/rbdN) through
// the rbd bus in sysfs: add_single_major to map, remove_single_major to
// unmap. Devices are found by reading /sys/bus/rbd/devices/<id>, never
// through udev, so mapping works on hosts (and test guests) without udevd
// and a mapping made before an agent restart is found again by its pool,
// image and snapshot.
package krbd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Image names one RBD image (Snap empty for the writable head).
type Image struct {
	Pool, Name, Snap string
}

func (i Image) String() string {
	if i.Snap == "" {
		return i.Pool + "/" + i.Name
	}
	return i.Pool + "/" + i.Name + "@" + i.Snap
}

// Auth is how the kernel client reaches the cluster.
type Auth struct {
	// Monitors are v1 (legacy messenger) monitor addresses, host:port.
	Monitors []string
	// User is the cephx id without "client."; Key its base64 secret.
	User, Key string
}

// Options of one mapping.
type Options struct {
	// Exclusive takes the image's exclusive lock at map time and never
	// hands it over: a second writer anywhere fails instead of taking
	// turns with this host.
	Exclusive bool
}

// Device is one mapped image.
type Device struct {
	ID    int    // the N of /dev/rbdN and /sys/bus/rbd/devices/N
	Path  string // /dev/rbdN
	Image Image
}

// Mapper maps and unmaps through sysfs. The zero value uses /sys and /dev;
// tests point Sys and Dev at a directory that plays the kernel.
type Mapper struct {
	Sys, Dev string
	// RetryEvery is the pause between unmap attempts while the device is
	// busy (default 200ms).
	RetryEvery time.Duration
}

func (m *Mapper) sys(p ...string) string {
	root := m.Sys
	if root == "" {
		root = "/sys"
	}
	return filepath.Join(append([]string{root, "bus", "rbd"}, p...)...)
}

func (m *Mapper) dev(id int) string {
	root := m.Dev
	if root == "" {
		root = "/dev"
	}
	return filepath.Join(root, "rbd"+strconv.Itoa(id))
}

// Available reports why the kernel cannot map here ("" when it can).
func (m *Mapper) Available() string {
	if _, err := os.Stat(m.sys("add_single_major")); err != nil {
		return fmt.Sprintf("no krbd in this kernel (%v): modprobe rbd", err)
	}
	return ""
}

// List reads every mapped device, sorted by id.
func (m *Mapper) List() ([]Device, error) {
	ents, err := os.ReadDir(m.sys("devices"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list rbd devices: %w", err)
	}
	var out []Device
	for _, e := range ents {
		id, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		d, err := m.read(id)
		if errors.Is(err, os.ErrNotExist) {
			continue // unmapped while we looked
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// read builds the Device of sysfs entry id.
func (m *Mapper) read(id int) (Device, error) {
	attr := func(name string) (string, error) {
		b, err := os.ReadFile(m.sys("devices", strconv.Itoa(id), name))
		return strings.TrimSpace(string(b)), err
	}
	d := Device{ID: id, Path: m.dev(id)}
	var err error
	if d.Image.Pool, err = attr("pool"); err != nil {
		return d, err
	}
	if d.Image.Name, err = attr("name"); err != nil {
		return d, err
	}
	if d.Image.Snap, err = attr("current_snap"); err != nil {
		return d, err
	}
	if d.Image.Snap == "-" {
		d.Image.Snap = ""
	}
	return d, nil
}

// Find returns the device mapping img, if any.
func (m *Mapper) Find(img Image) (Device, bool, error) {
	ds, err := m.List()
	if err != nil {
		return Device{}, false, err
	}
	for _, d := range ds {
		if d.Image == img {
			return d, true, nil
		}
	}
	return Device{}, false, nil
}

// addLine is what add_single_major takes: "<mons> <options> <pool> <image>
// <snap>". The key travels in the options (the kernel keeps it in its
// keyring); it never appears on a command line.
func addLine(a Auth, img Image, o Options) (string, error) {
	if len(a.Monitors) == 0 || a.User == "" || a.Key == "" {
		return "", errors.New("monitors, user and key are required")
	}
	for _, s := range append([]string{a.User, a.Key, img.Pool, img.Name, img.Snap}, a.Monitors...) {
		if strings.ContainsAny(s, " ,\n\t") {
			return "", fmt.Errorf("%q contains a space, comma or newline", s)
		}
	}
	if img.Pool == "" || img.Name == "" {
		return "", errors.New("pool and image are required")
	}
	opts := []string{"name=" + a.User, "secret=" + a.Key}
	if o.Exclusive {
		opts = append(opts, "exclusive")
	}
	snap := img.Snap
	if snap == "" {
		snap = "-"
	}
	return fmt.Sprintf("%s %s %s %s %s", strings.Join(a.Monitors, ","), strings.Join(opts, ","), img.Pool, img.Name, snap), nil
}

// Map maps img and returns its device; an image already mapped here is
// returned as it is (adopted, not mapped twice).
func (m *Mapper) Map(ctx context.Context, a Auth, img Image, o Options) (Device, error) {
	if d, ok, err := m.Find(img); err != nil || ok {
		return d, err
	}
	line, err := addLine(a, img, o)
	if err != nil {
		return Device{}, fmt.Errorf("map %s: %w", img, err)
	}
	// The write blocks until the kernel has the image open (or failed);
	// it cannot be cancelled, so it runs beside the context.
	done := make(chan error, 1)
	go func() { done <- writeFile(m.sys("add_single_major"), line) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		return Device{}, fmt.Errorf("map %s: %w (the kernel may still map it; the next Map adopts it)", img, context.Cause(ctx))
	}
	if err != nil {
		return Device{}, fmt.Errorf("map %s: %w", img, err)
	}
	d, ok, err := m.Find(img)
	if err != nil {
		return Device{}, fmt.Errorf("map %s: %w", img, err)
	}
	if !ok {
		return Device{}, fmt.Errorf("map %s: the kernel accepted it but lists no device for it", img)
	}
	if err := m.ensureNode(d); err != nil {
		return d, fmt.Errorf("map %s: %w", img, err)
	}
	return d, nil
}

// ensureNode makes /dev/rbdN from sysfs's major and minor when devtmpfs
// has not (a /dev that is not devtmpfs).
func (m *Mapper) ensureNode(d Device) error {
	if _, err := os.Stat(d.Path); err == nil {
		return nil
	}
	num := func(name string) (uint32, error) {
		b, err := os.ReadFile(m.sys("devices", strconv.Itoa(d.ID), name))
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
		return uint32(n), err
	}
	major, err := num("major")
	if err != nil {
		return fmt.Errorf("device %d: major: %w", d.ID, err)
	}
	minor, err := num("minor")
	if err != nil {
		return fmt.Errorf("device %d: minor: %w", d.ID, err)
	}
	dev := int((major << 8) | (minor & 0xff) | ((minor &^ 0xff) << 12))
	if err := syscall.Mknod(d.Path, syscall.S_IFBLK|0o600, dev); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("mknod %s: %w", d.Path, err)
	}
	return nil
}

// Unmap unmaps d. A device still open (EBUSY: a domain or a cache target
// still holds it) is retried until ctx ends; force then tears it down
// anyway, which the caller asks for only when nothing can still write
// (the holder is gone for good). Unmapping what is not mapped succeeds.
func (m *Mapper) Unmap(ctx context.Context, d Device, force bool) error {
	every := m.RetryEvery
	if every <= 0 {
		every = 200 * time.Millisecond
	}
	for {
		cur, err := m.read(d.ID)
		if errors.Is(err, os.ErrNotExist) || (err == nil && cur.Image != d.Image) {
			return nil // gone, or the id now maps another image
		}
		err = writeFile(m.sys("remove_single_major"), strconv.Itoa(d.ID))
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("unmap %s (rbd%d): %w", d.Image, d.ID, err)
		}
		select {
		case <-ctx.Done():
			if !force {
				return fmt.Errorf("unmap %s (rbd%d): still busy: %w", d.Image, d.ID, context.Cause(ctx))
			}
			if err := writeFile(m.sys("remove_single_major"), strconv.Itoa(d.ID)+" force"); err != nil && !errors.Is(err, syscall.ENOENT) {
				return fmt.Errorf("force unmap %s (rbd%d): %w", d.Image, d.ID, err)
			}
			return nil
		case <-time.After(every):
		}
	}
}

// writeFile writes s to a sysfs attribute in one write, as the kernel
// wants, and returns the kernel's error.
func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte(s))
	cerr := f.Close()
	if werr != nil {
		var pe *os.PathError
		if errors.As(werr, &pe) {
			return pe.Err
		}
		return werr
	}
	return cerr
}
