package cachedvol

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

// BlockDevice is a fast device given by its path.
type BlockDevice string

func (b BlockDevice) Path() string { return string(b) }

// Sectors is the device's size in 512-byte sectors.
func (b BlockDevice) Sectors() (int64, error) { return deviceSectors(string(b)) }

// Zero writes zeros over the first n bytes of s, synchronously.
func (b BlockDevice) Zero(s Slice, n int64) error {
	n = min(n, s.Sectors*512)
	f, err := os.OpenFile(string(b), os.O_WRONLY|os.O_SYNC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, n), s.Offset*512); err != nil {
		return fmt.Errorf("zero %s at sector %d: %w", b, s.Offset, err)
	}
	return f.Sync()
}

// deviceSectors is a block device's size (BLKGETSIZE64), or a regular
// file's, in 512-byte sectors.
func deviceSectors(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Mode().IsRegular() {
		return st.Size() / 512, nil
	}
	const blkGetSize64 = 0x80081272
	var size uint64
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), blkGetSize64, uintptr(unsafe.Pointer(&size))); e != 0 {
		return 0, fmt.Errorf("size of %s: %w", path, e)
	}
	return int64(size / 512), nil
}

// originSectors is how the manager sizes a mapped image's device.
var originSectors = deviceSectors
