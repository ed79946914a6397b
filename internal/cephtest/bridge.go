package cephtest

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
)

// setupAddress makes the cluster's bridge and address unless the caller
// brought both.
func (c *Cluster) setupAddress(name string) error {
	if c.Bridge != "" {
		if !c.Addr.IsValid() {
			return fmt.Errorf("bridge %q given without an address", c.Bridge)
		}
		return nil
	}
	if name == "" || len(name) > 12 {
		return fmt.Errorf("cluster name %q: want 1..12 characters (it names the bridge)", name)
	}
	c.Bridge = name + "cb"
	if !c.Addr.IsValid() {
		a, err := freeSubnet(os.Getpid())
		if err != nil {
			return err
		}
		c.Addr = a
	}
	if err := ipCmd("link", "add", c.Bridge, "type", "bridge"); err != nil {
		return err
	}
	c.ownBridge = true
	if err := ipCmd("addr", "add", c.Addr.String(), "dev", c.Bridge); err != nil {
		return err
	}
	return ipCmd("link", "set", c.Bridge, "up")
}

// freeSubnet picks 10.251.N.1/24 for an N that no address or route on the
// host uses yet, starting from a place derived from seed so that parallel
// test processes rarely probe the same N.
func freeSubnet(seed int) (netip.Prefix, error) {
	out, err := exec.Command("ip", "-4", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ip addr show: %w: %s", err, out)
	}
	routes, err := exec.Command("ip", "-4", "route", "show", "table", "all").CombinedOutput()
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("ip route show: %w: %s", err, routes)
	}
	used := string(out) + string(routes)
	for i := 0; i < 250; i++ {
		n := (seed + i*7) % 250
		if !strings.Contains(used, fmt.Sprintf("10.251.%d.", n)) {
			return netip.MustParsePrefix(fmt.Sprintf("10.251.%d.1/24", n)), nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /24 under 10.251.0.0/16")
}

func ipCmd(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
