package main

import (
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	coordapi "github.com/strata-infra/strata/coordinator/api"
	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// TestInstanceVolumeCommands: boot from a volume, attach and detach
// volumes, and the refusals, through stratactl against a coordinator.
func TestInstanceVolumeCommands(t *testing.T) {
	t.Setenv("STRATA_PROJECT", "")
	st, err := store.Open(filepath.Join(t.TempDir(), "c.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := httptest.NewServer(coordapi.New(coordapi.Options{Store: st, Registry: registry.Default(), Hosts: threeHosts{}}))
	t.Cleanup(srv.Close)
	tok, err := coordapi.IssueToken(st, api.TokenRequest{Name: "admin", Role: api.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	c := cliFor(t, srv.URL, tok.Secret)
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
