package main

import (
	"strings"
	"testing"

	"github.com/strata-infra/strata/pkg/api"
)

// TestDrainMigrateFlagAndEmptyHost: a bad --migrate is refused before
// anything is sent; --migrate on a host without instances moves its
// routers and DHCP and says the host is empty; fences list and
// evacuate's guard answer.
func TestDrainMigrateFlagAndEmptyHost(t *testing.T) {
	c, st := coordinatorCLI(t, threeHosts{})
	epoch := st.Epoch()
	if _, err := c.run("hosts", "drain", "h1", "--migrate", "sideways"); err == nil || !strings.Contains(err.Error(), "want live, cold or none") {
		t.Fatalf("bad --migrate: %v", err)
	}
	if st.Epoch() != epoch {
		t.Fatal("a refused drain changed the store")
	}
	out, err := c.run("hosts", "drain", "h1", "--migrate", "live")
	if err != nil || !strings.Contains(out, "host h1 is empty") || !strings.Contains(out, "0 instances to move") {
		t.Fatalf("drain --migrate live of an empty host: %v\n%s", err, out)
	}
	if out := c.must("fences", "list"); !strings.Contains(out, "HOST") {
		t.Fatalf("fences list:\n%s", out)
	}
	if _, err := c.run("instances", "evacuate", "-p", "p", "vm"); err == nil || !strings.Contains(err.Error(), "--accept-data-loss") {
		t.Fatalf("evacuate without --accept-data-loss: %v", err)
	}
}

// TestMovedOffSeesReportedStates: an instance's new host reports it
// running (or stopped), not "applied", in the resource's hosts list; the
// drain's wait takes that as arrived at the current epoch, and not a
// report behind the epoch, a pending host, an error, the old host or a
// move still in flight.
func TestMovedOffSeesReportedStates(t *testing.T) {
	done := movedOff("h1")
	at := func(host, state string, epoch uint64) api.Resource {
		return api.Resource{Epoch: 9, Hosts: []api.ResourceStatus{{Host: host, State: state, Epoch: epoch}}}
	}
	on := func(host string) api.InstanceSpec { return api.InstanceSpec{Host: host} }
	for _, c := range []struct {
		what string
		r    api.Resource
		s    api.InstanceSpec
		want bool
	}{
		{"running on h2 at the epoch", at("h2", "running", 9), on("h2"), true},
		{"stopped on h2 after the epoch", at("h2", "stopped", 10), on("h2"), true},
		{"applied on h2", at("h2", api.ResourceApplied, 9), on("h2"), true},
		{"running on h2 behind the epoch", at("h2", "running", 8), on("h2"), false},
		{"pending on h2", at("h2", api.ResourcePending, 9), on("h2"), false},
		{"error on h2", at("h2", api.ResourceError, 9), on("h2"), false},
		{"still on h1", at("h1", "running", 9), on("h1"), false},
		{"move in flight", at("h2", "running", 9), api.InstanceSpec{Host: "h2", Migration: &api.InstanceMigration{Source: "h1", Live: true}}, false},
		{"reported by another host", at("h3", "running", 9), on("h2"), false},
	} {
		if got := done(c.r, c.s); got != c.want {
			t.Errorf("%s: moved off %v, want %v", c.what, got, c.want)
		}
	}
}

// TestDrainMoveTimeoutFlag: a move timeout that is not positive is
// refused before anything is sent.
func TestDrainMoveTimeoutFlag(t *testing.T) {
	c, st := coordinatorCLI(t, threeHosts{})
	epoch := st.Epoch()
	if _, err := c.run("hosts", "drain", "h1", "--migrate", "live", "--move-timeout", "0s"); err == nil || !strings.Contains(err.Error(), "--move-timeout") {
		t.Fatalf("--move-timeout 0s: %v", err)
	}
	if st.Epoch() != epoch {
		t.Fatal("a refused drain changed the store")
	}
}
