package cachedvol

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
)

// Carver is a fast device that carves a logical volume per cache slice
// instead of cutting slices out of one device by offset: an LVM volume
// group. A slice it made has Path set (the LV, used from offset 0).
type Carver interface {
	// Carve makes the LV name of at least sectors (idempotent: an LV of
	// that name is returned as it is — it may hold a cache's data).
	Carve(ctx context.Context, name string, sectors int64) (Slice, error)
	// Activate makes a slice's LV usable again (after a reboot).
	Activate(ctx context.Context, s Slice) error
	// Drop removes a slice's LV; a missing one is not an error.
	Drop(ctx context.Context, s Slice) error
}

// VolumeGroup is an LVM volume group the caches are carved from, an LV
// per slice (strata-<volume>-cdata, -cmeta). LVM keeps the allocation,
// so the volumes of the host and anything else the operator keeps in
// the group never overlap. It runs the lvm tool without udev (the agent
// needs none; the device nodes are made by LVM itself).
type VolumeGroup struct {
	Name string
	LVM  string // the lvm binary; "lvm" in PATH when empty
}

// vgNameRE is what LVM accepts as a VG name (and nothing a shell or a
// path could misread).
var vgNameRE = regexp.MustCompile(`^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,126}$`)

// ValidateVGName checks a volume group's name.
func ValidateVGName(name string) error {
	if !vgNameRE.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("%q is not an LVM volume group name", name)
	}
	return nil
}

// noUdev keeps lvm from waiting on udev, which hosts without it (and the
// kernel-test guest) lack; LVM then makes the /dev nodes itself.
const noUdev = "activation { udev_sync = 0 udev_rules = 0 verify_udev_operations = 1 } devices { obtain_device_list_from_udev = 0 }"

func (g VolumeGroup) run(ctx context.Context, args ...string) (string, error) {
	bin := g.LVM
	if bin == "" {
		bin = "lvm"
	}
	args = append([]string{args[0], "--config", noUdev}, args[1:]...)
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("lvm %s: %w: %s", strings.Join(args[:1], " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// Path is the group's directory of LV nodes.
func (g VolumeGroup) Path() string { return "/dev/" + g.Name }

// Sectors is the group's size.
func (g VolumeGroup) Sectors() (int64, error) {
	out, err := g.run(context.Background(), "vgs", "--noheadings", "--units", "b", "--nosuffix", "-o", "vg_size", g.Name)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size of volume group %s: %q", g.Name, out)
	}
	return n / 512, nil
}

// Zero clears the first bytes of the slice's LV.
func (g VolumeGroup) Zero(s Slice, n int64) error {
	if s.Path == "" {
		return fmt.Errorf("volume group %s: a slice without its LV", g.Name)
	}
	return BlockDevice(s.Path).Zero(Slice{Sectors: s.Sectors}, n)
}

func (g VolumeGroup) lvPath(name string) string { return "/dev/" + g.Name + "/" + name }

func (g VolumeGroup) Carve(ctx context.Context, name string, sectors int64) (Slice, error) {
	path := g.lvPath(name)
	if _, err := g.run(ctx, "lvs", "--noheadings", g.Name+"/"+name); err != nil {
		// Rounded up to whole MiB (LVM rounds up to its extent size too).
		mib := (sectors*512 + 1<<20 - 1) >> 20
		if _, err := g.run(ctx, "lvcreate", "--yes", "--wipesignatures", "n", "--zero", "n",
			"-L", strconv.FormatInt(mib, 10)+"m", "-n", name, g.Name); err != nil {
			return Slice{}, fmt.Errorf("carve %s from volume group %s: %w", name, g.Name, err)
		}
	}
	s := Slice{Path: path}
	if err := g.Activate(ctx, s); err != nil {
		return Slice{}, err
	}
	n, err := deviceSectors(path)
	if err != nil {
		return Slice{}, err
	}
	s.Sectors = n
	return s, nil
}

func (g VolumeGroup) Activate(ctx context.Context, s Slice) error {
	if _, err := os.Stat(s.Path); err == nil {
		return nil
	}
	lv := strings.TrimPrefix(s.Path, "/dev/")
	if _, err := g.run(ctx, "lvchange", "-ay", lv); err != nil {
		return fmt.Errorf("activate %s: %w", s.Path, err)
	}
	return nil
}

func (g VolumeGroup) Drop(ctx context.Context, s Slice) error {
	lv := strings.TrimPrefix(s.Path, "/dev/")
	if _, err := g.run(ctx, "lvs", "--noheadings", lv); err != nil {
		return nil // gone already
	}
	if _, err := g.run(ctx, "lvremove", "--yes", lv); err != nil {
		return fmt.Errorf("drop %s: %w", s.Path, err)
	}
	return nil
}
