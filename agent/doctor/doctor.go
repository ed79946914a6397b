// Package doctor is strata-agent's preflight: it checks every kernel
// feature, binary and socket the configured drivers need and says, for each
// one missing, how to fix it. It reads the host through an Env so tests run
// it against a fake root and fake lookups.
package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// Status of one check.
const (
	OK      = "ok"
	Missing = "missing"
	// Warn is an optional feature that is missing: the agent works, slower
	// or with less (TCG instead of KVM, no GRE tunnels).
	Warn = "warn"
)

// Result is one row of the report.
type Result struct {
	Check    string `json:"check"`
	Status   string `json:"status"`
	Detail   string `json:"detail"`
	Fix      string `json:"fix,omitempty"`
	Required bool   `json:"required"`
}

// Env is how the doctor sees the host. Root prefixes every /proc, /sys,
// /dev, /run, /boot and /lib path it reads ("/" on a real host).
type Env struct {
	Root string
	// LookPath finds a binary on PATH (exec.LookPath on a real host).
	LookPath func(name string) (string, error)
	// Dial connects to a unix socket and closes it.
	Dial func(path string) error
	// Output runs a command and returns its stdout (dmsetup targets); nil
	// skips such probes.
	Output func(name string, args ...string) ([]byte, error)
}

// Host is the Env of the machine the doctor runs on.
func Host() Env {
	return Env{
		Root:     "/",
		LookPath: exec.LookPath,
		Dial: func(path string) error {
			c, err := net.DialTimeout("unix", path, 2*time.Second)
			if err != nil {
				return err
			}
			return c.Close()
		},
		Output: func(name string, args ...string) ([]byte, error) {
			return exec.Command(name, args...).Output()
		},
	}
}

func (e Env) path(p string) string { return filepath.Join(e.Root, p) }

func (e Env) exists(p string) bool {
	_, err := os.Stat(e.path(p))
	return err == nil
}

// Report is the outcome of a doctor run.
type Report struct {
	OK     bool     `json:"ok"`
	Checks []Result `json:"checks"`
}

// NewReport wraps results; OK is false when a required check is missing.
func NewReport(rs []Result) Report {
	r := Report{OK: true, Checks: rs}
	for _, c := range rs {
		if c.Required && c.Status != OK {
			r.OK = false
		}
	}
	return r
}

// Print writes the report as a table (CHECK STATUS DETAIL FIX) or JSON.
func (r Report) Print(w io.Writer, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "table", "":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CHECK\tSTATUS\tDETAIL\tFIX")
		for _, c := range r.Checks {
			fix := c.Fix
			if c.Status == OK || fix == "" {
				fix = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Check, c.Status, oneLine(c.Detail), fix)
		}
		return tw.Flush()
	default:
		return fmt.Errorf("output format %q: want table or json", format)
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
