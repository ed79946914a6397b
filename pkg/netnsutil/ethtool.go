package netnsutil

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TxChecksumOff turns TX checksum offload off on link name in namespace ns
// ("" is the caller's) through the ethtool ioctl (ETHTOOL_STXCSUM), so the
// kernel fills in checksums before a packet leaves by that link. Packets
// read by OVS's userspace datapath need that: it does not complete a
// checksum the kernel left to "hardware".
func TxChecksumOff(ns, name string) error {
	return Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		val := struct{ cmd, data uint32 }{cmd: unix.ETHTOOL_STXCSUM, data: 0}
		var ifr struct {
			name [unix.IFNAMSIZ]byte
			data uintptr
			_    [16]byte
		}
		copy(ifr.name[:], name)
		ifr.data = uintptr(unsafe.Pointer(&val))
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
			return fmt.Errorf("turn tx checksum offload off on %q: %w", name, errno)
		}
		return nil
	})
}
