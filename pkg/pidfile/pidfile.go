// Package pidfile finds and stops the daemons Strata starts by their pid
// files, never by name: a pid is only trusted when that process's command
// line names the pid file itself, since pids are reused.
package pidfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// KillAll sends SIGKILL to every process below dir whose pid file (named
// "pid" or "*.pid") its own command line names, and returns how many.
func KillAll(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || (d.Name() != "pid" && !strings.HasSuffix(d.Name(), ".pid")) {
			return nil
		}
		b, _ := os.ReadFile(p)
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			return nil
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if bytes.Contains(cmdline, []byte(p)) && syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
		return nil
	})
	return n
}

// Alive reports whether the process whose pid the file at path holds runs,
// names that file on its command line, and is not a zombie.
func Alive(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(path)) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}
