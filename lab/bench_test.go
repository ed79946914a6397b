package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/strata-infra/strata/agent/network"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netlinksafe"
	"github.com/strata-infra/strata/pkg/netnsutil"
)

// BenchmarkLabPortToFDB measures, on a 3-host lab with real agents, the time
// from a port create on h1 (API answer included) to its MAC being in the
// VXLAN FDB of both remote hosts: commit, long-poll wake-up, plan delta,
// reconcile and netlink, end to end.
func BenchmarkLabPortToFDB(b *testing.B) {
	l := benchLab(b)
	ctx := context.Background()
	c, err := l.Client()
	if err != nil {
		b.Fatal(err)
	}
	var net api.Resource
	if err := c.Do(ctx, http.MethodGet, "/v1/projects/a/networks/net", nil, &net); err != nil {
		b.Fatal(err)
	}
	var ns api.NetworkSpec
	_ = json.Unmarshal(net.Spec, &ns)
	remotes := []string{l.Namespace(2), l.Namespace(3)}
	var samples []time.Duration
	b.ResetTimer()
	for i := 0; i < max(b.N, 20); i++ {
		name := fmt.Sprintf("bench-%d-%d", b.N, i)
		start := time.Now()
		var pr api.PutResult
		body := map[string]any{"spec": map[string]any{"network": "net", "host": "h1"}}
		if err := c.Do(ctx, http.MethodPut, "/v1/projects/a/ports/"+name, body, &pr); err != nil {
			b.Fatal(err)
		}
		var ps api.PortSpec
		_ = json.Unmarshal(pr.Resource.Spec, &ps)

		for _, r := range remotes {
			if err := waitFDB(r, network.VXLANName(ns.SegmentationID), ps.MAC, 10*time.Second); err != nil {
				b.Fatal(err)
			}
		}
		samples = append(samples, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "median_ms")
	// 20-odd samples earn no p99: the highest one is reported as the max.
	b.ReportMetric(float64(samples[len(samples)-1].Microseconds())/1000, "max_ms")
	b.ReportMetric(float64(len(samples)), "samples")
}

const benchManifest = `
kind: project
name: a
---
kind: network
project: a
name: net
---
kind: subnet
project: a
name: sub
spec: {network: net, cidr: 10.20.0.0/16, dhcp: false}
---
kind: port
project: a
name: on-h2
spec: {network: net, host: h2}
---
kind: port
project: a
name: on-h3
spec: {network: net, host: h3}
`

func benchLab(b *testing.B) *Lab {
	b.Helper()
	l := testLab(b, 3, 10000)
	if err := l.Up(context.Background()); err != nil {
		b.Fatal(err)
	}
	waitCLI(b, l, 30*time.Second, "hosts up", AllAliveAndConverged(3))
	applyManifest(b, l, benchManifest)
	waitCLI(b, l, 30*time.Second, "network converged", AllAliveAndConverged(3))
	return l
}

// waitFDB polls ns's FDB on dev until mac is there.
func waitFDB(ns, dev, mac string, limit time.Duration) error {
	h, err := netnsutil.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	deadline := time.Now().Add(testenv.Scale(limit))
	for time.Now().Before(deadline) {
		if link, err := h.LinkByName(dev); err == nil {
			neighs, err := netlinksafe.NeighList(h, link.Attrs().Index, unix.AF_BRIDGE)
			if err == nil && hasMAC(neighs, mac) {
				return nil
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("%s: %s never reached the FDB of %s", ns, mac, dev)
}

func hasMAC(ns []netlink.Neigh, mac string) bool {
	for _, n := range ns {
		if strings.EqualFold(n.HardwareAddr.String(), mac) {
			return true
		}
	}
	return false
}
