// Package dmcache drives the kernel's device-mapper cache targets through
// dmsetup: dm-writecache for a writeback cache (writes land on the fast
// device and are written back to the origin in the background) and
// dm-cache for a writethrough cache (every write reaches the origin before
// it is acknowledged; hot blocks are read from the fast device). It builds
// the tables (pure functions, tested against expected text), parses the
// targets' status lines into one Stats shape, and runs the few dmsetup
// verbs the agent needs behind the small DM interface, so that the logic
// above it is tested with a fake and the driver itself in the kernel-test
// guest (the CI kernel has no device-mapper).
//
// Which target serves which mode, and why:
//   - writeback: dm-writecache. It caches writes only (reads of blocks it
//     holds are served from it), commits its metadata on every flush/FUA so
//     an acknowledged write survives a crash on the fast device, and has
//     watermarks, a maximum age of a dirty block and a cleaner mode to
//     write everything back. dm-cache's own writeback mode has no maximum
//     age, so a dead host could hold dirty blocks for ever.
//   - writethrough: dm-cache with the smq policy: the origin always holds
//     every acknowledged write, so losing the fast device loses nothing.
//   - writearound is not offered: no device-mapper target caches reads
//     while sending writes only to the origin (dm-cache's passthrough mode
//     caches nothing at all; bcache has writearound but is not
//     device-mapper). "none" is the uncached device itself.
package dmcache
