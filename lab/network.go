package lab

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ip runs iproute2; the lab is a harness, so it drives the same commands an
// operator would type.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func linkExists(name string) bool {
	return exec.Command("ip", "link", "show", "dev", name).Run() == nil
}

func nsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

// UpNetwork makes the bridge and, per host, a namespace with a veth whose
// peer is on the bridge. Existing pieces are kept.
func (l *Lab) UpNetwork() error {
	if !linkExists(l.Bridge) {
		if err := ip("link", "add", l.Bridge, "type", "bridge"); err != nil {
			return err
		}
	}
	cidr := fmt.Sprintf("%s/%d", l.BridgeAddr(), l.Subnet.Bits())
	if err := ip("addr", "replace", cidr, "dev", l.Bridge); err != nil {
		return err
	}
	if err := ip("link", "set", l.Bridge, "up"); err != nil {
		return err
	}
	if err := l.upExternal(); err != nil {
		return err
	}
	for i := 1; i <= l.Hosts; i++ {
		if err := l.upHost(i); err != nil {
			return err
		}
	}
	return nil
}

// The external (provider) network of the lab: a second bridge, with each
// host's ext0 in it (the agents bridge it as physical network "physnet1")
// and one namespace standing for the outside world and its router.
func (l *Lab) extBridge() string { return l.Short + "ex" }

// ExternalNamespace is the outside world's namespace.
func (l *Lab) ExternalNamespace() string { return l.Prefix + "-ext" }

// ExternalAddr is the outside world's address, also the external
// network's gateway.
func (l *Lab) ExternalAddr() netip.Prefix { return netip.MustParsePrefix("203.0.113.1/24") }

func (l *Lab) upExternal() error {
	br := l.extBridge()
	if !linkExists(br) {
		if err := ip("link", "add", br, "type", "bridge"); err != nil {
			return err
		}
	}
	if err := ip("link", "set", br, "up"); err != nil {
		return err
	}
	ns, outer := l.ExternalNamespace(), l.Short+"xo"
	if !nsExists(ns) {
		if err := ip("netns", "add", ns); err != nil {
			return err
		}
	}
	if !linkExists(outer) {
		if err := ip("link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns); err != nil {
			return err
		}
	}
	for _, s := range [][]string{
		{"link", "set", outer, "master", br, "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "addr", "replace", l.ExternalAddr().String(), "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
	} {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) upHost(i int) error {
	ns := l.Namespace(i)
	if !nsExists(ns) {
		if err := ip("netns", "add", ns); err != nil {
			return err
		}
	}
	outer := fmt.Sprintf("%sh%d", l.Short, i)
	if !linkExists(outer) {
		if err := ip("link", "add", outer, "type", "veth", "peer", "name", "underlay0", "netns", ns); err != nil {
			return err
		}
	}
	ext := fmt.Sprintf("%sx%d", l.Short, i)
	if !linkExists(ext) {
		if err := ip("link", "add", ext, "type", "veth", "peer", "name", "ext0", "netns", ns); err != nil {
			return err
		}
	}
	steps := [][]string{
		{"link", "set", ext, "master", l.extBridge(), "up"},
		{"link", "set", outer, "master", l.Bridge, "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "set", "underlay0", "up"},
	}
	if l.L2Driver(i) != DriverOVS {
		// An ovs host's address goes on its OVS underlay bridge (upOVS).
		steps = append(steps, []string{"-n", ns, "addr", "replace", fmt.Sprintf("%s/%d", l.HostAddr(i), l.Subnet.Bits()), "dev", "underlay0"})
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	if l.L2Driver(i) == DriverOVS {
		return l.upOVS(i)
	}
	return nil
}

// downNetwork removes every namespace and link the lab made; missing ones
// are fine. Deleting a namespace deletes the veth end inside it, and so the
// pair.
func (l *Lab) downNetwork() error {
	var errs []string
	for i := 1; i <= l.Hosts; i++ {
		made, _ := filepath.Glob("/run/netns/" + l.NetNSPrefix(i) + "*")
		for _, m := range made {
			if err := ip("netns", "delete", filepath.Base(m)); err != nil {
				errs = append(errs, err.Error())
			}
		}
		if ns := l.Namespace(i); nsExists(ns) {
			if err := ip("netns", "delete", ns); err != nil {
				errs = append(errs, err.Error())
			}
		}
		// Deleting the namespace takes its veth end, and the kernel removes
		// the outer end a moment later: gone by then is fine.
		if outer := fmt.Sprintf("%sh%d", l.Short, i); linkExists(outer) {
			if err := ip("link", "delete", outer); err != nil && linkExists(outer) {
				errs = append(errs, err.Error())
			}
		}
	}
	if nsExists(l.ExternalNamespace()) {
		if err := ip("netns", "delete", l.ExternalNamespace()); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for i := 1; i <= l.Hosts; i++ {
		// Its peer went with the host's namespace: the kernel may remove
		// it between the check and the delete, and gone is fine.
		if ext := fmt.Sprintf("%sx%d", l.Short, i); linkExists(ext) {
			if err := ip("link", "delete", ext); err != nil && linkExists(ext) {
				errs = append(errs, err.Error())
			}
		}
	}
	for _, br := range []string{l.Bridge, l.extBridge()} {
		if linkExists(br) {
			if err := ip("link", "delete", br); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("lab network down: %s", strings.Join(errs, "; "))
	}
	return nil
}
