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

// TestDrainMigrateFlagAndEmptyHost: a bad --migrate is refused before
// anything is sent; --migrate on a host without instances moves its
// routers and DHCP and says the host is empty; fences list and
// evacuate's guard answer.
func TestDrainMigrateFlagAndEmptyHost(t *testing.T) {
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
