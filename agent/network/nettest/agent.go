package nettest

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/agent/network/dhcp"
	"github.com/strata-infra/strata/agent/network/endpoint"
	"github.com/strata-infra/strata/agent/network/internal/nlink"
	"github.com/strata-infra/strata/agent/network/linuxbridge"
	"github.com/strata-infra/strata/agent/network/ovs"
	"github.com/strata-infra/strata/internal/netprobe"
	"github.com/strata-infra/strata/internal/testenv"
)

// L2 is the driver that makes a host's bridges and tunnels.
type L2 interface {
	network.L2
	Changes() int64
}

// Agent is the network side of one lab host's strata-agent.
type Agent struct {
	Host *Host
	L2   L2                  // LB or OVS
	LB   *linuxbridge.Driver // nil on an ovs host
	OVS  *ovs.Driver         // nil on a linuxbridge host
	DHCP *dhcp.Driver
	EP   *endpoint.Driver
	All  network.Multi
	// Links is the drivers' shared dump of the host's links, as the
	// agent's.
	Links *nlink.LinkCache

	once sync.Once
	stop func()
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
	a := &Agent{Host: h}
	links, err := nlink.NewLinkCache(h.NS)
	must(t, err)
	a.Links = links
	if h.Driver == "ovs" {
		o, err := ovs.New(context.Background(), ovs.Config{NetNS: h.NS, DB: h.OVS.DB(), RunDir: h.OVS.Dir, Datapath: h.Datapath,
			PortWait: testenv.Scale(15 * time.Second), Logger: log})
		must(t, err)
		a.OVS, a.L2 = o, o
	} else {
		lb, err := linuxbridge.New(linuxbridge.Config{NetNS: h.NS, Logger: log, Links: links})
		must(t, err)
		a.LB, a.L2 = lb, lb
	}
	d, err := dhcp.New(dhcp.Config{NetNS: h.NS, NSPrefix: h.Prefix, StateDir: filepath.Join(h.StateDir, "dhcp"), Logger: log, Links: links})
	must(t, err)
	ep, err := endpoint.New(endpoint.Config{NetNS: h.NS, NSPrefix: h.Prefix, Logger: log, Links: links})
	must(t, err)
	a.DHCP, a.EP, a.All = d, ep, network.Multi{a.L2, d, ep}
	t.Cleanup(func() { KillPidFiles(h.StateDir) })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { d.Supervise(ctx, 100*time.Millisecond) })
	if a.OVS != nil {
		every := h.CanaryEvery
		if every <= 0 {
			every = 100 * time.Millisecond
		}
		wg.Go(func() { a.OVS.Watch(ctx, every) })
	}
	a.stop = func() { cancel(); wg.Wait(); a.All.Close(); links.Close() }
	t.Cleanup(a.Stop)
	return a
}

// Stop ends the agent as its process exiting would: the dnsmasq supervisor
// and the OVS watcher stop and the drivers close, while what they made on the host (links,
// FDB entries, dnsmasq processes) stays. Calling it again does nothing.
func (a *Agent) Stop() {
	a.once.Do(a.stop)
}

// Set applies st, bound by this agent's L2 driver as the agent binds it,
// and fails t on error.
func (a *Agent) Set(t testing.TB, st network.HostState) {
	t.Helper()
	if err := a.All.Set(context.Background(), a.Bind(st)); err != nil {
		t.Fatalf("host %s: %v", a.Host.Name, err)
	}
}

// Bind returns st with its networks bound by this agent's L2 driver (on
// an ovs host, with the driver that plugs ports into its bridge), for
// tests that hand a state to one driver themselves.
func (a *Agent) Bind(st network.HostState) network.HostState {
	st.Networks = append([]network.Network(nil), st.Networks...)
	network.Bind(&st, a.L2)
	return st
}

// DHCP runs busybox udhcpc in namespace ns on ifName and returns the address
// it applied.
func DHCP(ctx context.Context, t testing.TB, ns, ifName string) (string, error) {
	return netprobe.DHCP(ctx, ns, ifName, t.TempDir())
}

// Ping sends count pings from ns to ip every interval and returns how many
// were sent and received.
func Ping(ctx context.Context, ns, ip string, count int, interval time.Duration) (sent, recv int, err error) {
	return netprobe.Ping(ctx, ns, ip, count, interval)
}
