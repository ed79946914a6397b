package dhcp

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/pkg/netnsutil"
)

// lease is one MAC,IP line of a hosts file.
type lease struct {
	mac string
	ip  netip.Addr
}

// goneLeases lists the IPv4 MAC,IP pairs of the old hosts file that the
// new one no longer has: ports deleted or given another address.
func goneLeases(old, new string) []lease {
	keep := map[lease]bool{}
	for _, l := range parseHosts(new) {
		keep[l] = true
	}
	var out []lease
	for _, l := range parseHosts(old) {
		if !keep[l] && l.ip.Is4() {
			out = append(out, l)
		}
	}
	return out
}

func parseHosts(content string) []lease {
	var out []lease
	sc := bufio.NewScanner(strings.NewReader(content))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ",")
		if len(f) < 2 {
			continue
		}
		ip, err := netip.ParseAddr(strings.Trim(f[1], "[]"))
		if err == nil {
			out = append(out, lease{mac: strings.ToLower(f[0]), ip: ip})
		}
	}
	return out
}

// release tells dnsmasq, through dhcp_release in its namespace, that the
// leases of ports that went are free. Otherwise dnsmasq keeps such a lease
// until it expires and will not give the address to the port that takes
// it next (a new MAC). Missing dhcp_release (dnsmasq-utils) only delays
// reuse, so it is reported, not fatal.
func (d *Driver) release(ns string, gone []lease) error {
	if len(gone) == 0 {
		return nil
	}
	bin, err := exec.LookPath("dhcp_release")
	if err != nil {
		for _, p := range []string{"/usr/bin/dhcp_release", "/usr/sbin/dhcp_release"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		d.log.Warn("dhcp_release not found (install dnsmasq-utils): freed addresses wait for their leases to expire", "leases", len(gone))
		return nil
	}
	var errs []string
	for _, l := range gone {
		var out bytes.Buffer
		cmd := exec.Command(bin, network.DHCPIfName, l.ip.String(), l.mac)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := netnsutil.Do(ns, cmd.Start); err == nil {
			err = cmd.Wait()
			if err == nil {
				d.log.Info("released lease", "netns", ns, "ip", l.ip, "mac", l.mac)
				continue
			}
			errs = append(errs, fmt.Sprintf("%s %s: %v %s", l.ip, l.mac, err, strings.TrimSpace(out.String())))
		} else {
			errs = append(errs, fmt.Sprintf("%s %s: %v", l.ip, l.mac, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("dhcp_release in %q: %s", ns, strings.Join(errs, "; "))
	}
	return nil
}

// oldHosts reads the hosts file as dnsmasq last saw it.
func oldHosts(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, hostsFile))
	return string(b)
}
