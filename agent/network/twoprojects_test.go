package network_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestTwoProjectsSameCIDR: two projects with the same 10.1.1.0/24 on
// different VNIs over three hosts; endpoints get their addresses by DHCP and
// reach exactly their own project. A ping to an IP both projects use must be
// answered by the MAC of the sender's own project.
func TestTwoProjectsSameCIDR(t *testing.T) { forEachDriver(t, testTwoProjectsSameCIDR) }

// TestMixedFleet: h1 on linuxbridge, h2 and h3 on ovs; VXLAN networks
// interoperate and the two projects on one CIDR stay isolated.
func TestMixedFleet(t *testing.T) {
	testTwoProjectsSameCIDR(t, newTwoProjectsOn(t, "linuxbridge", "ovs", "ovs"))
}

func testTwoProjectsSameCIDR(t *testing.T, p *twoProjects) {
	start := time.Now()
	p.setAll(t)
	t.Logf("three hosts converged in %v", time.Since(start).Round(time.Millisecond))
	p.leaseAll(t)
	t.Logf("four endpoints leased their fixed addresses by DHCP %v after start", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cells := make([][]string, len(p.eps))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for i, from := range p.eps {
		cells[i] = make([]string, len(p.eps))
		wg.Go(func() {
			for j, to := range p.eps {
				if i == j {
					cells[i][j] = "-"
					continue
				}
				ok, mac := reach(ctx, from, to)
				cells[i][j] = answeredBy(p, ok, mac)
				if msg := checkCell(p, from, to, ok, mac); msg != "" {
					mu.Lock()
					failures = append(failures, msg)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	t.Logf("connectivity matrix (row pings the column's IP; cell = port whose MAC answered):\n%s", matrix(p.eps, cells))
	for _, f := range failures {
		t.Error(f)
	}
}

// answeredBy names the port whose MAC answered, "local" for the sender's
// own address, or "none".
func answeredBy(p *twoProjects, answered bool, mac string) string {
	switch {
	case !answered:
		return "none"
	case mac == "":
		return "local"
	}
	for _, pt := range p.ports {
		if pt.MAC.String() == mac {
			return pt.ID
		}
	}
	return mac
}

// checkCell says what is wrong with one measured cell, or "".
func checkCell(p *twoProjects, from, to testEndpoint, answered bool, mac string) string {
	if from.project == to.project {
		if !answered || mac != to.port.MAC.String() {
			return fmt.Sprintf("%s -> %s (%s, same project): answered=%v mac=%q, want answer from %s", from.name, to.name, to.ip, answered, mac, to.port.MAC)
		}
		return ""
	}
	// Another project: nothing of it answers. The sender itself answers a
	// ping to its own IP locally (no neighbour entry); a port of its own
	// project with that IP answers with its own MAC.
	if from.ip == to.ip {
		if !answered || mac != "" {
			return fmt.Sprintf("%s -> %s (%s, other project, sender's own IP): answered=%v mac=%q, want a local answer", from.name, to.name, to.ip, answered, mac)
		}
		return ""
	}
	for _, own := range p.ports {
		if own.NetworkID == from.project && own.IPs[0].String() == to.ip {
			if !answered || mac != own.MAC.String() {
				return fmt.Sprintf("%s -> %s (%s, other project, same IP as own %s): answered=%v mac=%q, want %s", from.name, to.name, to.ip, own.ID, answered, mac, own.MAC)
			}
			return ""
		}
	}
	if answered || mac != "" {
		return fmt.Sprintf("%s -> %s (%s, other project): answered=%v mac=%q, want nothing", from.name, to.name, to.ip, answered, mac)
	}
	return ""
}

func matrix(eps []testEndpoint, cells [][]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-22s", "")
	for _, e := range eps {
		fmt.Fprintf(&b, "%-8s", e.name)
	}
	b.WriteString("\n")
	for i, e := range eps {
		fmt.Fprintf(&b, "%-22s", fmt.Sprintf("%s %s@%s %s", e.name, e.project[len(e.project)-1:], e.host, e.ip))
		for _, c := range cells[i] {
			fmt.Fprintf(&b, "%-8s", c)
		}
		b.WriteString("\n")
	}
	return b.String()
}
