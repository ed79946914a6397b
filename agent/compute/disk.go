package compute

import (
	"context"
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
// sparsely. Both grow to the flavor's disk size when it is larger.
func ensureDisk(ctx context.Context, in Instance, path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
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
