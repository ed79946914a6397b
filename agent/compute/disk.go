package compute

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"

	"github.com/strata-infra/strata/pkg/computespec"
)

// ensureDisk makes the instance's root disk from its image unless it is
// there already (a disk is never recreated: it holds the guest's writes).
// A qcow2 image gets a qcow2 overlay backed by it; a raw image is copied
// sparsely. Both grow to the flavor's disk size when it is larger, and an
// existing disk grows when the flavor does (a resize); none ever shrinks.
func ensureDisk(ctx context.Context, in Instance, path string) error {
	if _, err := os.Stat(path); err == nil {
		return growDisk(ctx, in, path)
	}
	tmp := path + ".tmp"
	os.Remove(tmp)
	size := int64(in.Flavor.DiskGiB) << 30
	var cmd *exec.Cmd
	switch in.Image.Format {
	case computespec.FormatQCOW2:
		args := []string{"create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", in.Image.Path, tmp}
		if size > 0 {
			args = append(args, strconv.FormatInt(size, 10))
		}
		cmd = exec.CommandContext(ctx, "qemu-img", args...)
	case computespec.FormatRaw:
		cmd = exec.CommandContext(ctx, "cp", "--sparse=always", in.Image.Path, tmp)
	default:
		return fmt.Errorf("disk %q: unknown image format %q", path, in.Image.Format)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("disk %q from image %q: %w: %s", path, in.Image.ID, err, out)
	}
	if in.Image.Format == computespec.FormatRaw {
		if err := growRaw(tmp, size); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("disk %q: %w", path, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("disk %q: %w", path, err)
	}
	return nil
}

func growRaw(path string, size int64) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Size() >= size {
		return nil
	}
	if err := os.Truncate(path, size); err != nil {
		return errors.Join(errors.New("grow raw disk"), err)
	}
	return nil
}

// growDisk grows an existing disk to the flavor's size (a resize). A
// qcow2 disk is grown by qemu-img, which refuses while qemu holds the
// image: the coordinator resizes only stopped instances, and a refusal is
// retried at the next pass.
func growDisk(ctx context.Context, in Instance, path string) error {
	size := int64(in.Flavor.DiskGiB) << 30
	if size == 0 {
		return nil
	}
	if in.Image.Format != computespec.FormatQCOW2 {
		if err := growRaw(path, size); err != nil {
			return fmt.Errorf("disk %q: %w", path, err)
		}
		return nil
	}
	cur, err := qcow2Size(ctx, path)
	if err != nil || cur >= size {
		return err
	}
	out, err := exec.CommandContext(ctx, "qemu-img", "resize", "-q", "-f", "qcow2", path, strconv.FormatInt(size, 10)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("grow disk %q to %d GiB: %w: %s", path, in.Flavor.DiskGiB, err, out)
	}
	return nil
}

// qcow2Size is a qcow2 disk's virtual size.
func qcow2Size(ctx context.Context, path string) (int64, error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "-U", "--output=json", "-f", "qcow2", path).Output()
	if err != nil {
		return 0, fmt.Errorf("disk %q: qemu-img info: %w", path, err)
	}
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return 0, fmt.Errorf("disk %q: qemu-img info: %w", path, err)
	}
	return info.VirtualSize, nil
}
