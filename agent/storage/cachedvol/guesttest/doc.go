// Package guesttest holds the tests of package cachedvol (and of krbd and
// dmcache beneath it) that need Debian's full kernel: krbd, dm-writecache
// and dm-cache against a real Ceph cluster. TestCachedVolumesInGuest boots
// the kernel-test guest (twice: the second boot is the crash test's
// reboot) and runs every guest test of the package there; they are kept
// apart from cachedvol's unit tests so that those need neither Ceph nor a
// guest.
package guesttest
