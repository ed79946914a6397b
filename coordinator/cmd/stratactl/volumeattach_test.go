package main

import (
	"strings"
	"testing"
)

// TestInstanceVolumeCommands: boot from a volume, attach and detach
// volumes, and the refusals, through stratactl against a coordinator.
func TestInstanceVolumeCommands(t *testing.T) {
	c, _ := coordinatorCLI(t, threeHosts{})
	c.must("projects", "create", "p")
	c.must("flavors", "create", "small", "--vcpus", "1", "--ram", "256", "--disk", "1")
	c.must("volumetypes", "create", "default", "--pool", "volumes")
	for _, v := range []string{"boot", "data"} {
		c.must("volumes", "-p", "p", "create", v, "--size", "1")
	}
	c.must("instances", "create", "-p", "p", "vm", "--flavor", "small", "--boot-volume", "boot")
	c.must("instances", "attach-volume", "-p", "p", "vm", "data")
	if out := c.must("instances", "show", "-p", "p", "vm"); !strings.Contains(out, "root volume: boot") || !strings.Contains(out, "volumes:     data") {
		t.Fatalf("instances show:\n%s", out)
	}
	for _, args := range [][]string{
		{"instances", "attach-volume", "-p", "p", "vm", "data"}, // already
		{"instances", "attach-volume", "-p", "p", "vm", "nope"},
		{"volumes", "-p", "p", "delete", "data"}, // attached
	} {
		if out, err := c.run(args...); err == nil {
			t.Fatalf("%v accepted:\n%s", args, out)
		}
	}
	c.must("instances", "detach-volume", "-p", "p", "vm", "data")
	if out, err := c.run("instances", "detach-volume", "-p", "p", "vm", "data"); err == nil {
		t.Fatalf("second detach accepted:\n%s", out)
	}
	c.must("volumes", "-p", "p", "delete", "data")
}
