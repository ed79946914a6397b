package compute

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Domain types a host runs its guests with.
const (
	DomainKVM  = "kvm"  // hardware virtualisation through /dev/kvm
	DomainQEMU = "qemu" // TCG, qemu's software emulation
)

// KVM ioctl numbers from <linux/kvm.h>; x/sys has none of them.
const (
	kvmGetAPIVersion    = 0xAE00
	kvmCreateVM         = 0xAE01
	kvmGetVCPUMmapSize  = 0xAE04
	kvmCreateVCPU       = 0xAE41
	kvmSetUserMemRegion = 0x4020AE46
	kvmRun              = 0xAE80
	kvmSetRegs          = 0x4090AE82
	kvmGetSregs         = 0x8138AE83
	kvmSetSregs         = 0x4138AE84
	kvmSetMSRs          = 0x4008AE89
	kvmGetMSRs          = 0xC008AE88
	kvmExitHLT          = 5
	msrArchCapabilities = 0x10a
)

// DetectDomainType returns DomainKVM when the KVM device at path really runs
// a guest, and DomainQEMU with the reason otherwise. Opening /dev/kvm is not
// enough: a paravirtual KVM (PVM) accepts qemu's -accel kvm and then hangs,
// or aborts because it refuses MSR 0x10a, which qemu writes on every vCPU.
// The probe runs a one-instruction guest (hlt) and writes that MSR.
func DetectDomainType(path string, timeout time.Duration) (string, error) {
	res := make(chan error, 1)
	go func() { res <- probeKVM(path) }()
	select {
	case err := <-res:
		if err != nil {
			return DomainQEMU, err
		}
		return DomainKVM, nil
	case <-time.After(timeout):
		// The probe thread is stuck in KVM_RUN; it is left behind.
		return DomainQEMU, fmt.Errorf("kvm %q: probe guest did not halt within %v", path, timeout)
	}
}

func ioctl(fd uintptr, req uintptr, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, req, arg)
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

func probeKVM(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open kvm %q: %w", path, err)
	}
	defer f.Close()
	kvm := f.Fd()
	if v, err := ioctl(kvm, kvmGetAPIVersion, 0); err != nil || v != 12 {
		return fmt.Errorf("kvm %q: api version %d: %v", path, v, err)
	}
	vmfd, err := ioctl(kvm, kvmCreateVM, 0)
	if err != nil {
		return fmt.Errorf("kvm %q: create vm: %w", path, err)
	}
	defer unix.Close(int(vmfd))
	mem, err := unix.Mmap(-1, 0, 0x1000, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("kvm %q: guest memory: %w", path, err)
	}
	defer unix.Munmap(mem)
	mem[0] = 0xf4 // hlt
	var region [32]byte
	binary.LittleEndian.PutUint64(region[8:], 0x1000)                                    // guest_phys_addr
	binary.LittleEndian.PutUint64(region[16:], 0x1000)                                   // memory_size
	binary.LittleEndian.PutUint64(region[24:], uint64(uintptr(unsafe.Pointer(&mem[0])))) // userspace_addr
	if _, err := ioctl(vmfd, kvmSetUserMemRegion, uintptr(unsafe.Pointer(&region[0]))); err != nil {
		return fmt.Errorf("kvm %q: set memory region: %w", path, err)
	}
	vcpu, err := ioctl(vmfd, kvmCreateVCPU, 0)
	if err != nil {
		return fmt.Errorf("kvm %q: create vcpu: %w", path, err)
	}
	defer unix.Close(int(vcpu))
	// qemu copies the host's MSR_IA32_ARCH_CAPABILITIES feature value to
	// every vCPU; PVM refuses that write ("failed to set MSR 0x10a").
	var msrs [24]byte
	binary.LittleEndian.PutUint32(msrs[0:], 1)
	binary.LittleEndian.PutUint32(msrs[8:], msrArchCapabilities)
	if n, err := ioctl(kvm, kvmGetMSRs, uintptr(unsafe.Pointer(&msrs[0]))); err != nil || n != 1 {
		return fmt.Errorf("kvm %q: feature msr %#x unreadable (got %d): %v", path, msrArchCapabilities, n, err)
	}
	if n, err := ioctl(vcpu, kvmSetMSRs, uintptr(unsafe.Pointer(&msrs[0]))); err != nil || n != 1 {
		return fmt.Errorf("kvm %q: vcpu refuses msr %#x (set %d): %v", path, msrArchCapabilities, n, err)
	}
	var sregs [312]byte
	if _, err := ioctl(vcpu, kvmGetSregs, uintptr(unsafe.Pointer(&sregs[0]))); err != nil {
		return fmt.Errorf("kvm %q: get sregs: %w", path, err)
	}
	binary.LittleEndian.PutUint64(sregs[0:], 0)  // cs.base
	binary.LittleEndian.PutUint16(sregs[12:], 0) // cs.selector
	if _, err := ioctl(vcpu, kvmSetSregs, uintptr(unsafe.Pointer(&sregs[0]))); err != nil {
		return fmt.Errorf("kvm %q: set sregs: %w", path, err)
	}
	var regs [144]byte
	binary.LittleEndian.PutUint64(regs[128:], 0x1000) // rip
	binary.LittleEndian.PutUint64(regs[136:], 2)      // rflags
	if _, err := ioctl(vcpu, kvmSetRegs, uintptr(unsafe.Pointer(&regs[0]))); err != nil {
		return fmt.Errorf("kvm %q: set regs: %w", path, err)
	}
	size, err := ioctl(kvm, kvmGetVCPUMmapSize, 0)
	if err != nil {
		return fmt.Errorf("kvm %q: vcpu mmap size: %w", path, err)
	}
	run, err := unix.Mmap(int(vcpu), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("kvm %q: map vcpu: %w", path, err)
	}
	defer unix.Munmap(run)
	if _, err := ioctl(vcpu, kvmRun, 0); err != nil {
		return fmt.Errorf("kvm %q: run probe guest: %w", path, err)
	}
	if reason := binary.LittleEndian.Uint32(run[8:]); reason != kvmExitHLT {
		return fmt.Errorf("kvm %q: probe guest exited with reason %d, want hlt", path, reason)
	}
	return nil
}
