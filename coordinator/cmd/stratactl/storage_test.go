package main

import (
	"strings"
	"testing"
)

// TestVolumeCommands: volume types, volumes, snapshots, extend and flatten
// through the real commands and API; refusals name the field.
func TestVolumeCommands(t *testing.T) {
	c := newCLI(t)
	c.must("volumetypes", "create", "default", "--pool", "volumes")
	c.must("volumes", "-p", "p", "create", "data", "--size", "2")
	c.must("snapshots", "-p", "p", "create", "s1", "--volume", "data")
	c.must("volumes", "-p", "p", "create", "copy", "--size", "2", "--snapshot", "s1")
	c.must("volumes", "-p", "p", "extend", "data", "--size", "5")
	if out, err := c.run("volumes", "-p", "p", "extend", "data", "--size", "3"); err == nil || !strings.Contains(out+err.Error(), "spec.size_gib") {
		t.Fatalf("shrink: %v %s", err, out)
	}
	if out, err := c.run("snapshots", "-p", "p", "delete", "s1"); err == nil {
		t.Fatalf("deleting a snapshot a clone depends on: %s", out)
	}
	c.must("volumes", "-p", "p", "flatten", "copy")
	c.must("snapshots", "-p", "p", "delete", "s1")
	out := c.must("volumes", "-p", "p", "list")
	for _, want := range []string{"data", "5", "copy", "snapshot s1", "pending"} {
		if !strings.Contains(out, want) {
			t.Errorf("volumes list lacks %q:\n%s", want, out)
		}
	}
	if out := c.must("volumes", "-p", "p", "show", "copy"); !strings.Contains(out, "flatten:") || !strings.Contains(out, "true") {
		t.Errorf("volumes show:\n%s", out)
	}
	c.must("volumes", "-p", "p", "delete", "copy")
	c.must("volumes", "-p", "p", "delete", "data")
	c.must("volumetypes", "delete", "default")
}
