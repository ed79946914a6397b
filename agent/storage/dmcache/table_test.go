package dmcache

import (
	"strings"
	"testing"
	"time"
)

func TestTables(t *testing.T) {
	for _, c := range []struct{ name, got, want string }{
		{"linear", LinearTable("/dev/vda", 2048, 4096), "0 4096 linear /dev/vda 2048"},
		{"writecache defaults", WritecacheTable("/dev/rbd0", "/dev/mapper/c", 8192, Params{}),
			"0 8192 writecache s /dev/rbd0 /dev/mapper/c 4096 0"},
		{"writecache tuned", WritecacheTable("/dev/rbd0", "/dev/mapper/c", 8192, Params{HighWatermark: 60, LowWatermark: 40, MaxAge: 30 * time.Second}),
			"0 8192 writecache s /dev/rbd0 /dev/mapper/c 4096 6 high_watermark 60 low_watermark 40 max_age 30000"},
		{"writecache max age only", WritecacheTable("/dev/rbd0", "/dev/mapper/c", 8192, Params{MaxAge: time.Second}),
			"0 8192 writecache s /dev/rbd0 /dev/mapper/c 4096 2 max_age 1000"},
		{"cache", CacheTable("/dev/mapper/m", "/dev/mapper/d", "/dev/rbd1", 8192),
			"0 8192 cache /dev/mapper/m /dev/mapper/d /dev/rbd1 128 1 writethrough smq 0"},
	} {
		if c.got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, c.got, c.want)
		}
	}
}

func TestParamsValidate(t *testing.T) {
	for _, c := range []struct {
		p   Params
		bad string
	}{
		{Params{}, ""},
		{Params{HighWatermark: 50, LowWatermark: 45, MaxAge: time.Minute}, ""},
		{Params{HighWatermark: 101}, "high watermark"},
		{Params{LowWatermark: -1}, "low watermark"},
		{Params{HighWatermark: 40, LowWatermark: 50}, "above the high"},
		{Params{MaxAge: -time.Second}, "negative"},
		{Params{MaxAge: time.Microsecond}, "millisecond"},
	} {
		err := c.p.Validate()
		if (err == nil) != (c.bad == "") || (err != nil && !strings.Contains(err.Error(), c.bad)) {
			t.Errorf("%+v: got %v, want an error containing %q", c.p, err, c.bad)
		}
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{"": None, "none": None, "writeback": Writeback, "writethrough": Writethrough} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"writearound", "flashcache"} {
		if _, err := ParseMode(in); err == nil {
			t.Errorf("ParseMode(%q) accepted", in)
		}
	}
}

func TestCacheMetaBytes(t *testing.T) {
	// 1 GiB of 64 KiB blocks: 16384 blocks, 2*(4 MiB + 256 KiB) rounds up to 9 MiB.
	if got := CacheMetaBytes(1 << 30); got != 9<<20 {
		t.Errorf("CacheMetaBytes(1 GiB) = %d, want %d", got, 9<<20)
	}
}

func TestParseStatus(t *testing.T) {
	for _, c := range []struct {
		name, line string
		want       Stats
		bad        bool
	}{
		{name: "writecache with stats (6.1)",
			line: "0 262144 writecache 0 24512 14268 12 500 200 10300 40 10000 0 10244 0 3 0",
			want: Stats{Mode: Writeback, BlockBytes: 4096, Blocks: 24512, Used: 10244, Dirty: 10244, Writeback: 12,
				Reads: 500, ReadHits: 200, ReadMisses: 300, Writes: 10300, WriteHits: 10040, WriteMisses: 260}},
		{name: "writecache, old kernel", line: "0 100 writecache 0 10 10 0",
			want: Stats{Mode: Writeback, BlockBytes: 4096, Blocks: 10}},
		{name: "writecache failed", line: "0 100 writecache -5 10 4 0",
			want: Stats{Mode: Writeback, BlockBytes: 4096, Blocks: 10, Used: 6, Dirty: 6, Error: "error -5"}},
		{name: "cache",
			line: "0 262144 cache 8 27/2048 128 300/1536 10 20 30 40 0 12 0 1 writethrough 2 migration_threshold 2048 smq 0 rw -",
			want: Stats{Mode: Writethrough, BlockBytes: 65536, Blocks: 1536, Used: 300,
				ReadHits: 10, ReadMisses: 20, WriteHits: 30, WriteMisses: 40, Reads: 30, Writes: 70}},
		{name: "cache read-only metadata",
			line: "0 262144 cache 8 27/2048 128 300/1536 10 20 30 40 0 12 5 1 writethrough 2 migration_threshold 2048 smq 0 ro needs_check",
			want: Stats{Mode: Writethrough, BlockBytes: 65536, Blocks: 1536, Used: 300, Dirty: 5,
				ReadHits: 10, ReadMisses: 20, WriteHits: 30, WriteMisses: 40, Reads: 30, Writes: 70, Error: "metadata ro needs_check"}},
		{name: "cache failed", line: "0 262144 cache Fail", want: Stats{Mode: Writethrough, Error: "Fail"}},
		{name: "cache metadata unreadable", line: "0 262144 cache Error", want: Stats{Mode: Writethrough, Error: "Error"}},
		{name: "linear", line: "0 262144 linear", want: Stats{Mode: None}},
		{name: "garbage", line: "0 10 writecache x y z w", bad: true},
		{name: "short", line: "0 10 cache 8 1/2", bad: true},
		{name: "other target", line: "0 10 thin 3", bad: true},
	} {
		got, err := ParseStatus(c.line)
		if c.bad {
			if err == nil {
				t.Errorf("%s: accepted %q as %+v", c.name, c.line, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: ParseStatus(%q)\n got %+v, %v\nwant %+v", c.name, c.line, got, err, c.want)
		}
	}
}
