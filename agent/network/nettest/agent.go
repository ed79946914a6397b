package nettest

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/dhcp"
	"github.com/strata-infra/strata/agent/network/endpoint"
	"github.com/strata-infra/strata/agent/network/linuxbridge"
)

// Agent is the network side of one lab host's strata-agent.
type Agent struct {
	Host *Host
	LB   *linuxbridge.Driver
	DHCP *dhcp.Driver
	EP   *endpoint.Driver
	All  network.Multi
}

// Logger is a test logger at warning level, to keep test output short.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})).With("t", t.Name())
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// NewAgent makes the drivers of host h, as a fresh agent process would, and
// runs the dnsmasq supervisor every 100 ms. At cleanup the supervisor stops
// and every dnsmasq started under h.StateDir is killed by PID.
func NewAgent(t testing.TB, h *Host) *Agent {
	t.Helper()
	log := Logger(t).With("host", h.Name)
	lb, err := linuxbridge.New(linuxbridge.Config{NetNS: h.NS, Logger: log})
	must(t, err)
	d, err := dhcp.New(dhcp.Config{NetNS: h.NS, NSPrefix: h.Prefix, StateDir: filepath.Join(h.StateDir, "dhcp"), Logger: log})
	must(t, err)
	ep, err := endpoint.New(endpoint.Config{NetNS: h.NS, NSPrefix: h.Prefix, Logger: log})
	must(t, err)
	a := &Agent{Host: h, LB: lb, DHCP: d, EP: ep, All: network.Multi{lb, d, ep}}
	t.Cleanup(func() { KillPidFiles(h.StateDir) })
	t.Cleanup(func() { a.All.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Supervise(ctx, 100*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

// Set applies st and fails t on error.
func (a *Agent) Set(t testing.TB, st network.HostState) {
	t.Helper()
	if err := a.All.Set(context.Background(), st); err != nil {
		t.Fatalf("host %s: %v", a.Host.Name, err)
	}
}

// DHCP runs busybox udhcpc in namespace ns on ifName and returns the address
// it applied.
func DHCP(ctx context.Context, t testing.TB, ns, ifName string) (string, error) {
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	must(t, os.WriteFile(script, []byte(udhcpcScript), 0o755))
	out, err := Run(ctx, ns, "busybox", "udhcpc", "-i", ifName, "-n", "-q", "-f", "-t", "8", "-T", "1", "-A", "1", "-s", script)
	if err != nil {
		return "", err
	}
	m := leaseRE.FindStringSubmatch(out)
	if m == nil {
		return "", nil
	}
	return m[1], nil
}

var leaseRE = regexp.MustCompile(`lease of (\S+) obtained`)

// udhcpcScript applies a lease with iproute2, since busybox's default script
// is not installed.
const udhcpcScript = `#!/bin/sh
case "$1" in bound|renew) ;; *) exit 0;; esac
/usr/sbin/ip addr flush dev "$interface" scope global
/usr/sbin/ip addr add "$ip/${mask:-$subnet}" dev "$interface"
if [ -n "$router" ]; then /usr/sbin/ip route replace default via "${router%% *}" dev "$interface"; fi
exit 0
`

// Ping sends count pings from ns to ip every interval and returns how many
// were sent and received.
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

var pingRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) packets received`)
