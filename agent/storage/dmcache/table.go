package dmcache

import (
	"fmt"
	"strings"
	"time"
)

// Mode is a volume's cache mode.
type Mode string

const (
	None         Mode = "none"
	Writeback    Mode = "writeback"    // dm-writecache
	Writethrough Mode = "writethrough" // dm-cache, writethrough, smq
)

// ParseMode accepts "" (none) and the three modes.
func ParseMode(s string) (Mode, error) {
	switch Mode(s) {
	case "", None:
		return None, nil
	case Writeback, Writethrough:
		return Mode(s), nil
	case "writearound":
		return "", fmt.Errorf("cache mode writearound: no device-mapper target offers it (dm-cache passthrough caches nothing)")
	}
	return "", fmt.Errorf("cache mode %q is not none, writeback or writethrough", s)
}

// Params tune a writeback cache; the volume type sets them.
type Params struct {
	// HighWatermark and LowWatermark are percentages of the cache in use:
	// writeback starts above the high one and stops below the low one.
	// Zero leaves the kernel's defaults (50 and 45).
	HighWatermark, LowWatermark int
	// MaxAge is the longest a dirty block stays unwritten to the origin;
	// it bounds what a dead host can hold. Zero leaves the kernel's
	// default (no limit).
	MaxAge time.Duration
}

// Validate checks the params.
func (p Params) Validate() error {
	switch {
	case p.HighWatermark < 0 || p.HighWatermark > 100:
		return fmt.Errorf("high watermark %d is outside 0..100", p.HighWatermark)
	case p.LowWatermark < 0 || p.LowWatermark > 100:
		return fmt.Errorf("low watermark %d is outside 0..100", p.LowWatermark)
	case p.HighWatermark != 0 && p.LowWatermark > p.HighWatermark:
		return fmt.Errorf("low watermark %d is above the high watermark %d", p.LowWatermark, p.HighWatermark)
	case p.MaxAge < 0:
		return fmt.Errorf("max dirty age %s is negative", p.MaxAge)
	case p.MaxAge > 0 && p.MaxAge < time.Millisecond:
		return fmt.Errorf("max dirty age %s is under a millisecond", p.MaxAge)
	}
	return nil
}

// WritecacheBlock is the dm-writecache block size in bytes.
const WritecacheBlock = 4096

// CacheBlockSectors is dm-cache's block size (64 KiB), in 512-byte sectors.
const CacheBlockSectors = 128

// LinearTable maps sectors of dev starting at offset (in sectors).
func LinearTable(dev string, offset, sectors int64) string {
	return fmt.Sprintf("0 %d linear %s %d", sectors, dev, offset)
}

// WritecacheTable puts dm-writecache (ssd mode) with the cache device
// cache in front of origin, of sectors 512-byte sectors.
func WritecacheTable(origin, cache string, sectors int64, p Params) string {
	var opts []string
	if p.HighWatermark > 0 {
		opts = append(opts, "high_watermark", fmt.Sprint(p.HighWatermark))
	}
	if p.LowWatermark > 0 || p.HighWatermark > 0 {
		opts = append(opts, "low_watermark", fmt.Sprint(p.LowWatermark))
	}
	if p.MaxAge > 0 {
		opts = append(opts, "max_age", fmt.Sprint(p.MaxAge.Milliseconds()))
	}
	t := fmt.Sprintf("0 %d writecache s %s %s %d %d", sectors, origin, cache, WritecacheBlock, len(opts))
	if len(opts) > 0 {
		t += " " + strings.Join(opts, " ")
	}
	return t
}

// CacheTable puts dm-cache in writethrough mode with the smq policy over
// origin: meta holds its metadata, data the cached blocks.
func CacheTable(meta, data, origin string, sectors int64) string {
	return fmt.Sprintf("0 %d cache %s %s %s %d 1 writethrough smq 0", sectors, meta, data, origin, CacheBlockSectors)
}

// CacheMetaBytes is the metadata size dm-cache needs for a data device of
// dataBytes: 4 MiB plus 16 bytes a block, the kernel's documented rule,
// doubled for headroom and rounded up to a MiB.
func CacheMetaBytes(dataBytes int64) int64 {
	blocks := dataBytes / (CacheBlockSectors * 512)
	n := 2 * (4<<20 + 16*blocks)
	return (n + 1<<20 - 1) &^ (1<<20 - 1)
}
