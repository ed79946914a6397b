package rbd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrBadImage is a source file that is missing, empty or not in the format
// it claims.
var ErrBadImage = errors.New("bad image file")

// SourceImage is what qemu-img says about a file to import.
type SourceImage struct {
	Format      string // "raw" or "qcow2"
	VirtualSize uint64 // bytes the guest sees
}

// Inspect reads a file's format and size with qemu-img. want, when set,
// must match the detected format.
func Inspect(ctx context.Context, path, want string) (SourceImage, error) {
	if want != "" && want != "raw" && want != "qcow2" {
		return SourceImage{}, fmt.Errorf("format %q: want raw or qcow2: %w", want, ErrBadImage)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return SourceImage{}, fmt.Errorf("%s: %w: %v", path, ErrBadImage, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 {
		return SourceImage{}, fmt.Errorf("%s: %w: empty or not a regular file", path, ErrBadImage)
	}
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return SourceImage{}, fmt.Errorf("%s: %w: %s", path, ErrBadImage, strings.TrimSpace(string(ee.Stderr)))
		}
		return SourceImage{}, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	var info struct {
		Format      string `json:"format"`
		VirtualSize uint64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return SourceImage{}, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	if info.Format != "raw" && info.Format != "qcow2" {
		return SourceImage{}, fmt.Errorf("%s is %s: want raw or qcow2: %w", path, info.Format, ErrBadImage)
	}
	if want != "" && info.Format != want {
		return SourceImage{}, fmt.Errorf("%s is %s, not %s: %w", path, info.Format, want, ErrBadImage)
	}
	return SourceImage{Format: info.Format, VirtualSize: info.VirtualSize}, nil
}

// ImportFile imports a raw or qcow2 file (format "" detects it) into a new
// image dst with the protected snapshot BaseSnap that clones are made from.
// qcow2 is first converted to a sparse raw file in tmpDir with qemu-img.
func (c *Conn) ImportFile(ctx context.Context, path, format string, dst Ref, owner, tmpDir string, progress Progress) (SourceImage, error) {
	src, err := Inspect(ctx, path, format)
	if err != nil {
		return src, err
	}
	raw := path
	if src.Format == "qcow2" {
		dir, err := os.MkdirTemp(tmpDir, "strata-import-")
		if err != nil {
			return src, err
		}
		defer os.RemoveAll(dir)
		raw = filepath.Join(dir, "image.raw")
		if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", path, raw).CombinedOutput(); err != nil {
			return src, fmt.Errorf("convert %s to raw: %w: %s: %s", path, ErrBadImage, err, strings.TrimSpace(string(out)))
		}
	}
	return src, c.importRaw(ctx, raw, src.VirtualSize, dst, owner, progress)
}
