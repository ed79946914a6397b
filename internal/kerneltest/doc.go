// Package kerneltest runs a package's Go tests inside a qemu (TCG) guest that
// boots Debian's full kernel, so that code needing kernel features the CI
// kernel lacks (GRE, the openvswitch datapath, device-mapper caches, krbd,
// nbd, module loading) is tested for real.
//
// A test asks to be run in the guest with Run:
//
//	func TestWritecacheInGuest(t *testing.T) {
//		kerneltest.Run(t, "github.com/strata-infra/strata/agent/storage/cache", "^TestWritecache")
//	}
//
// Run compiles the package's test binary (go test -c, static unless
// Options.CGO is set), packs it into an initramfs beside busybox, the
// kernel modules and the host tools the tests call, boots the guest, runs
// the binary with -test.run and reports the guest's output and exit code.
// Inside the guest STRATA_KERNELTEST_GUEST=1 is set (see InGuest), so the
// guest-side tests can skip on the host.
//
// The uncompressed kernel and the base initramfs are cached under
// $STRATA_KERNEL_CACHE (default <repo>/build/kernel), keyed by the kernel
// version and a hash of the build inputs; a second run only repacks the test
// binary. The scripts that build them live in <repo>/testdata/kernel.
package kerneltest
