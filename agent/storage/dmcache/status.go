package dmcache

import (
	"fmt"
	"strconv"
	"strings"
)

// Stats is one cache's state, in the target's blocks.
type Stats struct {
	Mode Mode
	// BlockBytes is the size of one block of the counts below.
	BlockBytes int64
	// Blocks is the cache's size; Used how many hold data; Dirty how many
	// hold data the origin does not have yet (never more than Used).
	Blocks, Used, Dirty int64
	// Writeback counts the blocks being written back right now
	// (dm-writecache).
	Writeback int64
	// Reads and Writes count requests; ReadHits and WriteHits those served
	// by the cache; ReadMisses and WriteMisses the others.
	Reads, Writes                                int64
	ReadHits, ReadMisses, WriteHits, WriteMisses int64
	// Error is the target's own failure state: dm-writecache's error
	// number, or dm-cache's "Fail"/"ro" metadata mode or needs_check.
	Error string
}

// DirtyBytes is the data the origin lacks.
func (s Stats) DirtyBytes() int64 { return s.Dirty * s.BlockBytes }

// fields splits a status line and drops the "<start> <len> <target>"
// prefix dmsetup status prints.
func fields(line, target string) ([]string, error) {
	f := strings.Fields(line)
	if len(f) >= 3 && f[2] == target {
		f = f[3:]
	} else if len(f) >= 3 && f[2] != target && isNum(f[0]) && isNum(f[1]) && !isNum(f[2]) {
		return nil, fmt.Errorf("status of a %s target, want %s: %q", f[2], target, line)
	}
	return f, nil
}

func isNum(s string) bool { _, err := strconv.ParseInt(s, 10, 64); return err == nil }

// ParseWritecache reads a dm-writecache status line: <error> <total
// blocks> <free blocks> <blocks under writeback> and, on kernels that
// have them, <reads> <read hits> <writes> <write hits uncommitted> <write
// hits committed> <writes around> ...
func ParseWritecache(line string) (Stats, error) {
	f, err := fields(line, "writecache")
	if err != nil {
		return Stats{}, err
	}
	if len(f) < 4 {
		return Stats{}, fmt.Errorf("writecache status %q: want at least 4 fields", line)
	}
	n := make([]int64, len(f))
	for i, s := range f {
		if n[i], err = strconv.ParseInt(s, 10, 64); err != nil {
			return Stats{}, fmt.Errorf("writecache status %q: field %d: %w", line, i+1, err)
		}
	}
	s := Stats{Mode: Writeback, BlockBytes: WritecacheBlock, Blocks: n[1], Writeback: n[3]}
	if n[0] != 0 {
		s.Error = fmt.Sprintf("error %d", n[0])
	}
	// Every block in use is dirty: dm-writecache frees a block once it is
	// written back.
	s.Used = n[1] - n[2]
	s.Dirty = s.Used
	if len(n) >= 9 {
		s.Reads, s.ReadHits, s.Writes = n[4], n[5], n[6]
		s.WriteHits = n[7] + n[8]
		s.ReadMisses = s.Reads - s.ReadHits
		s.WriteMisses = s.Writes - s.WriteHits
	}
	return s, nil
}

// ParseCache reads a dm-cache status line: <metadata block size>
// <used>/<total metadata blocks> <cache block size> <used>/<total cache
// blocks> <read hits> <read misses> <write hits> <write misses>
// <demotions> <promotions> <dirty> <#features> <features>* <#core args>
// <core args>* <policy> <#policy args> <policy args>* <metadata mode>
// <needs_check>, or "Fail".
func ParseCache(line string) (Stats, error) {
	f, err := fields(line, "cache")
	if err != nil {
		return Stats{}, err
	}
	// "Fail": the cache is in failure mode; "Error": the kernel could
	// not read its metadata to report (seen as a device fails).
	if len(f) >= 1 && (f[0] == "Fail" || f[0] == "Error") {
		return Stats{Mode: Writethrough, Error: f[0]}, nil
	}
	if len(f) < 11 {
		return Stats{}, fmt.Errorf("cache status %q: want at least 11 fields", line)
	}
	num := func(i int) (int64, error) {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cache status %q: field %d: %w", line, i+1, err)
		}
		return v, nil
	}
	var s Stats
	s.Mode = Writethrough
	bs, err := num(2)
	if err != nil {
		return s, err
	}
	s.BlockBytes = bs * 512
	used, total, ok := strings.Cut(f[3], "/")
	if !ok {
		return s, fmt.Errorf("cache status %q: field 4 is not used/total", line)
	}
	if s.Used, err = strconv.ParseInt(used, 10, 64); err != nil {
		return s, fmt.Errorf("cache status %q: %w", line, err)
	}
	if s.Blocks, err = strconv.ParseInt(total, 10, 64); err != nil {
		return s, fmt.Errorf("cache status %q: %w", line, err)
	}
	var v [7]int64
	for i := range v {
		if v[i], err = num(4 + i); err != nil {
			return s, err
		}
	}
	s.ReadHits, s.ReadMisses, s.WriteHits, s.WriteMisses = v[0], v[1], v[2], v[3]
	s.Dirty = v[6]
	s.Reads, s.Writes = s.ReadHits+s.ReadMisses, s.WriteHits+s.WriteMisses
	// The metadata mode and needs_check close the line.
	if len(f) >= 2 {
		mode, check := f[len(f)-2], f[len(f)-1]
		if mode == "ro" || mode == "Fail" {
			s.Error = "metadata " + mode
		}
		if check == "needs_check" {
			s.Error = strings.TrimSpace(s.Error + " needs_check")
		}
	}
	return s, nil
}

// ParseStatus reads the status line of either target.
func ParseStatus(line string) (Stats, error) {
	f := strings.Fields(line)
	if len(f) >= 3 {
		switch f[2] {
		case "writecache":
			return ParseWritecache(line)
		case "cache":
			return ParseCache(line)
		case "linear":
			return Stats{Mode: None}, nil
		}
	}
	return Stats{}, fmt.Errorf("status %q: not a cache target", line)
}
