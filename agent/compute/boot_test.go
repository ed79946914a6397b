package compute_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
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
	// STRATA_BENCH_RUNS=N (make bench) boots N times and prints medians.
	runs, _ := strconv.Atoi(os.Getenv("STRATA_BENCH_RUNS"))
	var agents, boots []time.Duration
	for i := range max(runs, 1) {
		if i > 0 {
			set(t, d) // delete, then create again
		}
		start := time.Now()
		if err := d.Set(context.Background(), []compute.Instance{in}); err != nil {
			t.Fatal(err)
		}
		agent := time.Since(start)
		boot := pingUntil(t, nw.epNS, nw.guestIP, 120*time.Second)
		agents, boots = append(agents, agent), append(boots, boot)
	}
	agent, boot := median(agents), median(boots)
	fmt.Printf("bench: instance create->ping (median of %d): %v = coordinator n/a (not in this test) + agent define+start %v + guest boot start->first reply %v\n",
		len(agents), (agent + boot).Round(time.Millisecond), agent.Round(time.Millisecond), boot.Round(time.Millisecond))
	st := d.Status()
	if st.DomainType == "" || !st.Connected {
		t.Errorf("host status %+v: want a domain type and connected", st)
	}
	s := d.status("boot")
	if s.Power != computespec.PowerRunning {
		t.Errorf("instance power %q, want running", s.Power)
	}
	// The guest answers pings as soon as udhcpc has set its address; its
	// init prints the lease line after that, and the driver reads the
	// console on its sweep: wait for the line rather than read it once.
	for _, want := range []string{"strata-guest: lease 10.77.0.10", "strata-guest: disk vda"} {
		waitFor(t, 30*time.Second, "console log line "+strconv.Quote(want), func() bool {
			return strings.Contains(d.status("boot").ConsoleLog, want)
		})
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestGuestReadsCloudInit: the TCG guest boots from its image (the
// initramfs only loads drivers, then mounts the root filesystem from the
// instance's disk and runs the image's /sbin/init), mounts the NoCloud seed
// from the CD-ROM libvirt attaches and prints its instance-id, hostname and
// the user-data marker on the serial console.
func TestGuestReadsCloudInit(t *testing.T) {
	d := newDriver(t, 5*time.Second)
	in := instance("cloudinit")
	in.Spec.Name = "s21-seeded"
	if err := d.Set(context.Background(), []compute.Instance{in}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"strata-guest: root /dev/vda strata test image",
		"strata-guest: seed /dev/sr0 instance-id cloudinit",
		"strata-guest: seed hostname s21-seeded",
		"strata-guest: user-data strata-marker: cloudinit-user-data",
	}
	took := waitFor(t, 120*time.Second, "the seed's lines on the console", func() bool {
		log := d.status("cloudinit").ConsoleLog
		for _, w := range want {
			if !strings.Contains(log, w) {
				return false
			}
		}
		return true
	})
	log := d.status("cloudinit").ConsoleLog
	if strings.Contains(log, "no NoCloud seed") || strings.Contains(log, "no root filesystem") {
		t.Errorf("console:\n%s", log)
	}
	t.Logf("seed read and printed %s after start:\n%s", took.Round(time.Millisecond), log)
}
