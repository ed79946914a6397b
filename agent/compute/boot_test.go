package compute_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/compute"
	"github.com/strata-infra/strata/pkg/computespec"
)

// TestInstanceBootsAndPings boots a TCG guest on h1 whose NIC is a tap on
// the network's bridge; the guest takes its address from the network's
// dnsmasq and answers ping from an endpoint on h2 across VXLAN.
func TestInstanceBootsAndPings(t *testing.T) {
	d := newDriver(t, 5*time.Second)
	nw := newNet(t)
	in := instance("boot", nw.port)
	start := time.Now()
	if err := d.Set(context.Background(), []compute.Instance{in}); err != nil {
		t.Fatal(err)
	}
	agent := time.Since(start)
	boot := pingUntil(t, nw.epNS, nw.guestIP, 60*time.Second)
	t.Logf("bench: create->ping %v = agent (define+start) %v + guest boot (start->first reply) %v",
		(agent + boot).Round(time.Millisecond), agent.Round(time.Millisecond), boot.Round(time.Millisecond))
	st := d.Status()
	if st.DomainType == "" || !st.Connected {
		t.Errorf("host status %+v: want a domain type and connected", st)
	}
	s := d.status("boot")
	if s.Power != computespec.PowerRunning {
		t.Errorf("instance power %q, want running", s.Power)
	}
	for _, want := range []string{"strata-guest: lease 10.77.0.10", "strata-guest: disk vda"} {
		if !strings.Contains(s.ConsoleLog, want) {
			t.Errorf("console log lacks %q:\n%s", want, s.ConsoleLog)
		}
	}
}
