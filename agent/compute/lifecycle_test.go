package compute_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/compute"
	"github.com/strata-infra/strata/pkg/computespec"
	"github.com/strata-infra/strata/pkg/netnsutil"
)

func set(t *testing.T, d *testDriver, ins ...compute.Instance) {
	t.Helper()
	start := time.Now()
	if err := d.Set(context.Background(), ins); err != nil {
		t.Fatal(err)
	}
	t.Logf("Set took %v", time.Since(start).Round(time.Millisecond))
}

func waitPower(t *testing.T, d *testDriver, id string, want computespec.PowerState, timeout time.Duration) time.Duration {
	t.Helper()
	return waitFor(t, timeout, "instance "+id+" "+string(want), func() bool { return d.status(id).Power == want })
}

func tapExists(t *testing.T, name string) bool {
	h, err := netnsutil.Handle(env.hostA.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = h.LinkByName(name)
	return err == nil
}

// TestInstanceLifecycle: stop, start, reboot and delete do what they say;
// delete removes the domain, its tap, its seed ISO, disk and console log.
func TestInstanceLifecycle(t *testing.T) {
	d := newDriver(t, time.Second)
	nw := newNet(t)
	in := instance("life", nw.port)
	set(t, d, in)
	pingUntil(t, nw.epNS, nw.guestIP, 120*time.Second)
	tap := compute.TapName(nw.port.ID)
	if !tapExists(t, tap) {
		t.Fatalf("tap %s not on host h1", tap)
	}
	set(t, d, in) // idempotent: nothing to do, the guest keeps running
	if n := strings.Count(d.status("life").ConsoleLog, "strata-guest: boot"); n != 1 {
		t.Fatalf("second Set rebooted the guest: %d boots", n)
	}

	in.Spec.Power = computespec.PowerStopped
	set(t, d, in)
	waitPower(t, d, "life", computespec.PowerStopped, 20*time.Second)
	if tapExists(t, tap) {
		t.Errorf("tap %s still there after stop", tap)
	}

	in.Spec.Power = computespec.PowerRunning
	set(t, d, in)
	waitPower(t, d, "life", computespec.PowerRunning, 20*time.Second)
	pingUntil(t, nw.epNS, nw.guestIP, 120*time.Second)

	in.Spec.Reboots++
	set(t, d, in)
	waitFor(t, 120*time.Second, "reboot shows on the console", func() bool {
		return strings.Count(d.status("life").ConsoleLog, "strata-guest: boot") >= 3
	})
	pingUntil(t, nw.epNS, nw.guestIP, 120*time.Second)

	dir := filepath.Join(d.Config().StateDir, "instances", "life")
	for _, f := range []string{"seed.iso", "console.log", "disk"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("before delete: %v", err)
		}
	}
	set(t, d)
	if out, _ := env.daemon.Virsh("list", "--all", "--name"); strings.Contains(out, d.prefix+"life") {
		t.Errorf("domain still defined after delete:\n%s", out)
	}
	if tapExists(t, tap) {
		t.Errorf("tap %s still there after delete", tap)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("instance dir %s after delete: %v", dir, err)
	}
	if s := d.status("life"); s.ID != "" {
		t.Errorf("deleted instance still reported: %+v", s)
	}
}

// TestBadInputRefused: unknown flavor, RAM above the host's capacity and
// user data over 64 KiB are refused before anything is created.
func TestBadInputRefused(t *testing.T) {
	d := newDriver(t, time.Hour)
	cases := map[string]struct {
		edit  func(*compute.Instance)
		field string
	}{
		"unknownflavor": {func(in *compute.Instance) { in.Spec.Flavor = "m1.huge" }, "instance.flavor"},
		"toomuchram": {func(in *compute.Instance) {
			in.Flavor.RAMMiB = d.Status().Capacity.RAMMiB + 1
		}, "flavor.ram_mib"},
		"bigdata": {func(in *compute.Instance) { in.Spec.UserData = make([]byte, computespec.MaxUserData+1) }, "instance.user_data"},
	}
	for id, c := range cases {
		in := instance(id)
		c.edit(&in)
		err := d.Set(context.Background(), []compute.Instance{in})
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: Set error %v, want one naming %s", id, err, c.field)
		}
		if s := d.status(id); !strings.Contains(s.Error, c.field) || s.Power != computespec.PowerMissing {
			t.Errorf("%s: status %+v, want missing with an error naming %s", id, s, c.field)
		}
		if out, _ := env.daemon.Virsh("list", "--all", "--name"); strings.Contains(out, d.prefix+id) {
			t.Errorf("%s: a domain was defined", id)
		}
		if _, err := os.Stat(filepath.Join(d.Config().StateDir, "instances", id)); !os.IsNotExist(err) {
			t.Errorf("%s: instance files were made: %v", id, err)
		}
	}
}
