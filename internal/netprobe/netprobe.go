// Package netprobe runs the client side of traffic checks inside a network
// namespace: busybox udhcpc for DHCP and busybox ping. Tests and the lab's
// demo use it to see what an instance on a tenant network would see.
package netprobe

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"os/exec"

	"github.com/strata-infra/strata/pkg/netnsutil"
)

// Run runs a command with its network namespace switched to ns (mount
// namespace untouched) and returns its combined output.
func Run(ctx context.Context, ns string, name string, args ...string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	err := netnsutil.Do(ns, cmd.Start)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		return out.String(), fmt.Errorf("%s %s in %q: %w: %s", name, strings.Join(args, " "), ns, err, out.String())
	}
	return out.String(), nil
}

// udhcpcScript applies a lease with iproute2, since busybox's default script
// is not installed.
const udhcpcScript = `#!/bin/sh
case "$1" in bound|renew) ;; *) exit 0;; esac
/usr/sbin/ip addr flush dev "$interface" scope global
/usr/sbin/ip addr add "$ip/${mask:-$subnet}" dev "$interface"
if [ -n "$router" ]; then /usr/sbin/ip route replace default via "${router%% *}" dev "$interface"; fi
exit 0
`

var leaseRE = regexp.MustCompile(`lease of (\S+) obtained`)

// DHCP runs busybox udhcpc in ns on ifName, applies the lease and returns
// the address obtained ("" when none). scratch holds the lease script.
func DHCP(ctx context.Context, ns, ifName, scratch string) (string, error) {
	script := filepath.Join(scratch, "udhcpc.sh")
	if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
		return "", err
	}
	out, err := Run(ctx, ns, "busybox", "udhcpc", "-i", ifName, "-n", "-q", "-f", "-t", "8", "-T", "1", "-A", "1", "-s", script)
	if err != nil {
		return "", err
	}
	if m := leaseRE.FindStringSubmatch(out); m != nil {
		return m[1], nil
	}
	return "", nil
}

var pingRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`)

// Ping sends count pings from ns to ip every interval and returns how many
// were sent and received; a ping with losses is not an error.
func Ping(ctx context.Context, ns, ip string, count int, interval time.Duration) (sent, recv int, err error) {
	out, err := Run(ctx, ns, "busybox", "ping", "-c", strconv.Itoa(count),
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64), "-W", "1", ip)
	m := pingRE.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, err
	}
	sent, _ = strconv.Atoi(m[1])
	recv, _ = strconv.Atoi(m[2])
	return sent, recv, nil
}
