package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	coordapi "github.com/strata-infra/strata/coordinator/api"
	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// oneHost is the gossip view of a cluster with one alive host, h1, so DHCP
// ports and routers can be placed.
type oneHost struct{}

func (oneHost) Hosts() []api.Host { return []api.Host{{Name: "h1", State: api.StateAlive}} }

// cli runs stratactl's real commands against a real coordinator API.
type cli struct {
	t              *testing.T
	url, tokenFile string
	token          string // the secret, for direct API calls in tests
}

func newCLI(t *testing.T) *cli {
	t.Helper()
	c, _ := coordinatorCLI(t, oneHost{})
	c.must("projects", "create", "p")
	return c
}

// coordinatorCLI serves a real coordinator API over a fresh store with
// hosts as its gossip view, and returns an admin's stratactl against it
// and the store.
func coordinatorCLI(t *testing.T, hosts coordapi.HostSource) (*cli, *store.Store) {
	t.Helper()
	t.Setenv("STRATA_PROJECT", "")
	st, err := store.Open(filepath.Join(t.TempDir(), "c.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := httptest.NewServer(coordapi.New(coordapi.Options{Store: st, Registry: registry.Default(), Hosts: hosts}))
	t.Cleanup(srv.Close)
	tok, err := coordapi.IssueToken(st, api.TokenRequest{Name: "admin", Role: api.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	return cliFor(t, srv.URL, tok.Secret), st
}

// cliFor runs stratactl against url with the token in a file, as an
// operator would (never in argv).
func cliFor(t *testing.T, url, secret string) *cli {
	tf := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tf, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &cli{t: t, url: url, tokenFile: tf, token: secret}
}

func (c *cli) run(args ...string) (string, error) {
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"--endpoint", c.url, "--token-file", c.tokenFile}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func (c *cli) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("stratactl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// json runs a command with -o json and decodes its output into v.
func (c *cli) json(v any, args ...string) {
	c.t.Helper()
	out := c.must(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("stratactl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// step is one command and what it must print or fail with.
type step struct {
	args  string   // split on spaces
	want  []string // substrings of the output, in this order
	err   string   // substring of the error; "" for success
	field string   // the *api.Error's field, when the API refuses
}

func (c *cli) steps(steps []step) {
	c.t.Helper()
	for _, s := range steps {
		out, err := c.run(strings.Fields(s.args)...)
		switch {
		case s.err == "" && s.field == "" && err != nil:
			c.t.Fatalf("%s: %v\n%s", s.args, err, out)
		case (s.err != "" || s.field != "") && err == nil:
			c.t.Fatalf("%s: no error, want %q (field %q)\n%s", s.args, s.err, s.field, out)
		case err != nil && !strings.Contains(err.Error(), s.err):
			c.t.Fatalf("%s: error %v, want %q", s.args, err, s.err)
		case s.field != "":
			var ae *api.Error
			if !errors.As(err, &ae) || ae.Field != s.field {
				c.t.Fatalf("%s: error %#v, want an API error on field %q", s.args, err, s.field)
			}
		}
		rest := out
		for _, w := range s.want {
			i := strings.Index(rest, w)
			if i < 0 {
				c.t.Fatalf("%s: output lacks %q (or has it out of order):\n%s", s.args, w, out)
			}
			rest = rest[i+len(w):]
		}
	}
}

func spec[T any](t *testing.T, r api.Resource) T {
	t.Helper()
	var s T
	if err := json.Unmarshal(r.Spec, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func byName(rs []api.Resource, name string) (api.Resource, bool) {
	i := slices.IndexFunc(rs, func(r api.Resource) bool { return r.Name == name })
	if i < 0 {
		return api.Resource{}, false
	}
	return rs[i], true
}

func TestNetworksSubnetsPorts(t *testing.T) {
	c := newCLI(t)
	c.steps([]step{
		{args: "networks list", err: "--project is required"},
		{args: "networks create -p p app -o xml", err: `output format "xml": want table, json or yaml`},
		{args: "networks create -p p app --mtu 1400", want: []string{"app", "true"}},
		{args: "network create -p p app", err: "already exists"},
		{args: "networks create -p p big --mtu 99999", field: "spec.mtu"},
		{args: "subnets create -p p s1 --network app --cidr 10.1.0.0/24 --pool 10.1.0.10-10.1.0.20 --dns 192.0.2.53 --route 10.9.0.0/16=10.1.0.254"},
		{args: "subnets create -p p bad --network app --cidr 10.2.0.0/33", field: "spec.cidr"},
		{args: "subnets create -p p bad --network app --cidr 10.2.0.0/24 --pool 10.2.0.10", err: "want START-END"},
		{args: "subnet create -p p s2 --network app --cidr 10.3.0.0/24 --gateway none --no-dhcp"},
		{args: "subnets list -p p", want: []string{"NAME", "NETWORK", "CIDR", "GATEWAY", "DHCP",
			"s1", "app", "10.1.0.0/24", "10.1.0.1", "true", "s2", "app", "10.3.0.0/24", "none", "false"}},
		{args: "subnets show -p p s1", want: []string{"network:", "app", "cidr:", "10.1.0.0/24", "allocation_pools:", "10.1.0.10-10.1.0.20",
			"dns_servers:", "192.0.2.53", "host_routes:", "10.9.0.0/16=10.1.0.254"}},
		{args: "ports create -p p vm --network app --host h1 --owner endpoint --ip s1=10.1.0.15 --ip s2= --mac 02:00:00:00:00:aa"},
		{args: "ports create -p p any --network app --ip 10.3.0.7 --no-port-security"},
		{args: "ports create -p p clash --network app --ip 10.1.0.15", field: "spec.fixed_ips[0].ip"},
		{args: "ports list -p p", want: []string{"NETWORK", "MAC", "IPS", "HOST", "OWNER",
			"any", "app", "10.3.0.7", "vm", "app", "02:00:00:00:00:aa", "10.1.0.15,10.3.0.", "h1", "endpoint"}},
		{args: "port show -p p vm", want: []string{"name:", "p/vm", "mac:", "02:00:00:00:00:aa", "10.1.0.15 (subnet s1)", "host:", "h1",
			"owner:", "endpoint", "security_groups:", "default"}},
		{args: "port show -p p any", want: []string{"security_groups:", "port security off"}},
		{args: "networks show -p p app", want: []string{"type:", "vxlan", "mtu:", "1400", "dhcp_host:", "h1"}},
	})

	var nets []api.Resource
	c.json(&nets, "networks", "list", "-p", "p")
	n, ok := byName(nets, "app")
	if ns := spec[api.NetworkSpec](t, n); !ok || ns.SegmentationID == 0 || ns.MTU != 1400 || ns.DHCPHost != "h1" {
		t.Fatalf("network %+v", n)
	}
	var sub api.Resource
	c.json(&sub, "subnets", "show", "-p", "p", "s1")
	if ss := spec[api.SubnetSpec](t, sub); ss.Gateway != "10.1.0.1" || !ss.DHCPEnabled() || len(ss.AllocationPools) != 1 ||
		ss.AllocationPools[0] != (api.IPRange{Start: "10.1.0.10", End: "10.1.0.20"}) || ss.HostRoutes[0].NextHop != "10.1.0.254" {
		t.Fatalf("subnet %s", sub.Spec)
	}
	var ports []api.Resource
	c.json(&ports, "ports", "list", "-p", "p")
	vm, ok := byName(ports, "vm")
	ps := spec[api.PortSpec](t, vm)
	if !ok || len(ps.FixedIPs) != 2 || ps.FixedIPs[0] != (api.FixedIP{Subnet: "s1", IP: "10.1.0.15"}) || ps.FixedIPs[1].Subnet != "s2" {
		t.Fatalf("port %s", vm.Spec)
	}
	if !slices.ContainsFunc(ports, func(r api.Resource) bool { return spec[api.PortSpec](t, r).Owner == api.PortOwnerDHCP }) {
		t.Fatalf("no DHCP port among %d ports", len(ports))
	}
	var pr api.PutResult
	c.json(&pr, "networks", "create", "-p", "p", "other")
	if !pr.Changed || pr.Resource.Name != "other" {
		t.Fatalf("create -o json: %+v", pr)
	}

	c.steps([]step{
		{args: "subnets delete -p p s2", err: "port"},
		{args: "ports delete -p p vm", want: []string{"vm", "true"}},
		{args: "ports delete -p p any"},
		{args: "subnets delete -p p s1"},
		{args: "subnets delete -p p s2"},
		{args: "networks delete -p p app"},
		{args: "networks show -p p app", err: "404"},
	})
}
