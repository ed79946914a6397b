package main

import (
	"strings"
	"testing"
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
