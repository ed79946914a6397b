package doctor

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"strings"
)

// Feature is a kernel feature: a module name and its Kconfig symbol.
type Feature struct {
	Name   string // shown as "kernel:<Name>"
	Module string // /sys/module/<Module>, /lib/modules/<release>/.../<Module>.ko*
	Config string // CONFIG_ symbol
	// DMTarget is the device-mapper target name, for dm features.
	DMTarget string
}

// kernelConfig reads the running kernel's config (/proc/config.gz, else
// /boot/config-<release>) into symbol -> "y" | "m". Nil if neither exists.
func (e Env) kernelConfig() map[string]string {
	var r io.Reader
	if f, err := os.Open(e.path("/proc/config.gz")); err == nil {
		defer f.Close()
		if zr, err := gzip.NewReader(f); err == nil {
			r = zr
		}
	}
	if r == nil {
		b, err := os.ReadFile(e.path("/boot/config-" + e.release()))
		if err != nil {
			return nil
		}
		r = bytes.NewReader(b)
	}
	cfg := map[string]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "CONFIG_") {
			cfg[k] = v
		}
	}
	return cfg
}

func (e Env) release() string {
	b, _ := os.ReadFile(e.path("/proc/sys/kernel/osrelease"))
	return strings.TrimSpace(string(b))
}

// moduleFile reports whether <module>.ko* is installed for the running
// kernel (modprobe can load it).
func (e Env) moduleFile(module string) bool {
	b, err := os.ReadFile(e.path("/lib/modules/" + e.release() + "/modules.dep"))
	if err != nil {
		return false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, _, _ := strings.Cut(sc.Text(), ":")
		base := name[strings.LastIndexByte(name, '/')+1:]
		base, _, _ = strings.Cut(base, ".ko")
		if strings.ReplaceAll(base, "-", "_") == module {
			return true
		}
	}
	return false
}

// kernel checks one feature: loaded or built in (/sys/module, the kernel
// config), loadable (=m and the module file installed), or for dm a target
// that dmsetup lists.
func (e Env) kernel(f Feature, cfg map[string]string, required bool, fix string) Result {
	r := Result{Check: "kernel:" + f.Name, Required: required, Fix: fix}
	switch {
	case f.Module != "" && e.exists("/sys/module/"+f.Module):
		r.Status, r.Detail = OK, "module "+f.Module+" loaded or built in"
	case cfg[f.Config] == "y":
		r.Status, r.Detail = OK, f.Config+"=y (built in)"
	case cfg[f.Config] == "m" && e.moduleFile(f.Module):
		r.Status, r.Detail = OK, "module "+f.Module+" loadable"
	case f.DMTarget != "" && e.dmTarget(f.DMTarget):
		r.Status, r.Detail = OK, "device-mapper target "+f.DMTarget
	default:
		r.Status = Missing
		switch {
		case cfg == nil:
			r.Detail = fmt.Sprintf("no /sys/module/%s and no kernel config to check %s", f.Module, f.Config)
		case cfg["CONFIG_MODULES"] != "y" && cfg[f.Config] == "":
			r.Detail = f.Config + " is not set and this kernel cannot load modules"
		case cfg[f.Config] == "m":
			r.Detail = fmt.Sprintf("%s=m but %s.ko is not installed", f.Config, f.Module)
		default:
			r.Detail = f.Config + " is not set"
		}
	}
	if !required && r.Status == Missing {
		r.Status = Warn
	}
	return r
}

func (e Env) dmTarget(name string) bool {
	if e.Output == nil {
		return false
	}
	if _, err := e.LookPath("dmsetup"); err != nil {
		return false
	}
	out, err := e.Output("dmsetup", "targets")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}
