package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// threeHosts is a gossip view of three alive hosts with room, configured
// for Ceph pools images and volumes.
type threeHosts struct{}

func (threeHosts) Hosts() []api.Host {
	var out []api.Host
	for _, n := range []string{"h1", "h2", "h3"} {
		out = append(out, api.Host{Name: n, State: api.StateAlive, Zone: "az1", Capacity: api.Capacity{VCPUs: 4, RAMMiB: 4096, DiskGiB: 40},
			Storage: []string{"rbd:images", "rbd:volumes"}})
	}
	return out
}

func TestSchedulingCommands(t *testing.T) {
	c, st := coordinatorCLI(t, threeHosts{})
	c.must("projects", "create", "p")
	c.must("flavors", "create", "small", "--vcpus", "1", "--ram", "256", "--disk", "1")
	c.must("flavors", "create", "fast", "--vcpus", "1", "--ram", "256", "--extra-spec", "disk=ssd")
	c.must("images", "create", "tiny", "--format", "raw", "--path", "/var/lib/strata/images/tiny.raw")
	c.must("aggregates", "create", "ssd", "--host", "h1", "--meta", "disk=nvme")
	c.must("aggregates", "add-host", "ssd", "h3")
	c.must("aggregates", "remove-host", "ssd", "h1")
	c.must("aggregates", "set", "ssd", "disk=ssd")
	if out := c.must("aggregates", "list"); !strings.Contains(out, "h3") || !strings.Contains(out, "disk=ssd") || strings.Contains(out, "h1") {
		t.Fatalf("aggregates list:\n%s", out)
	}
	c.must("instances", "create", "-p", "p", "f", "--flavor", "fast", "--image", "tiny")
	if out := c.must("instances", "show", "-p", "p", "f"); !strings.Contains(out, "h3") {
		t.Fatalf("fast flavor not on the ssd host h3:\n%s", out)
	}
	c.must("servergroups", "create", "-p", "p", "web", "--policy", "anti-affinity")
	for _, n := range []string{"w1", "w2", "w3"} {
		c.must("instances", "create", "-p", "p", n, "--flavor", "small", "--image", "tiny", "--group", "web", "--zone", "az1")
	}
	out, err := c.run("instances", "create", "-p", "p", "w4", "--flavor", "small", "--image", "tiny", "--group", "web")
	if err == nil || !strings.Contains(out+err.Error(), "0 of 3 hosts: 3 already holding a member of anti-affinity group web") {
		t.Fatalf("fourth member: %v\n%s", err, out)
	}
	if _, err := c.run("instances", "migrate", "-p", "p", "f"); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("migrate running: %v", err)
	}
	c.must("instances", "stop", "-p", "p", "f")
	c.must("flavors", "create", "fast2", "--vcpus", "2", "--ram", "512", "--extra-spec", "disk=ssd")
	c.must("instances", "resize", "-p", "p", "f", "fast2")
	// h3 is the only ssd host: a migration has nowhere to go, and says why.
	if _, err := c.run("instances", "migrate", "-p", "p", "f"); err == nil ||
		!strings.Contains(err.Error(), "0 of 3 hosts: 1 the instance's current host, 2 not in an aggregate matching the flavor") {
		t.Fatalf("migrate with nowhere to go: %v", err)
	}
	// The refusal stays in the instance's placement status.
	if out := c.must("instances", "show", "-p", "p", "f"); !strings.Contains(out,
		"placement:   refused: no host for instance p/f: 0 of 3 hosts: 1 the instance's current host, 2 not in an aggregate matching the flavor") {
		t.Fatalf("instances show after the refused migration:\n%s", out)
	}
	// A resize may itself move the instance (the scheduler picks among all
	// hosts), so the migration is judged against the host it had just before.
	c.must("instances", "resize", "-p", "p", "f", "small")
	arrived(t, st, c.url, c.token, "f")
	before := hostLine(c.must("instances", "show", "-p", "p", "f"))
	c.must("instances", "migrate", "-p", "p", "f")
	out = c.must("instances", "show", "-p", "p", "f")
	if hostLine(out) == before {
		t.Fatalf("migrated instance still on %s:\n%s", before, out)
	}
	// Until the new host has it, another move waits.
	if _, err := c.run("instances", "migrate", "-p", "p", "f"); err == nil || !strings.Contains(err.Error(), "is migrating from "+before) {
		t.Fatalf("migrate during a migration: %v", err)
	}
	arrived(t, st, c.url, c.token, "f")
	if out := c.must("instances", "show", "-p", "p", "f"); !strings.Contains(out, "migrated from "+before+" to "+hostLine(out)) {
		t.Fatalf("instances show after the move:\n%s", out)
	}
	// A live migration needs the root disk on RBD; this one's is local.
	c.must("instances", "start", "-p", "p", "f")
	if _, err := c.run("instances", "migrate", "-p", "p", "f", "--live"); err == nil || !strings.Contains(err.Error(), "root disk on RBD") {
		t.Fatalf("live migration of a local disk: %v", err)
	}
}

// arrived posts, as the instance's host, that it has the (stopped)
// instance at its current epoch: a move in progress is then done.
func arrived(t *testing.T, st *store.Store, url, token, name string) {
	t.Helper()
	var r api.Resource
	err := st.View(func(tx *store.Tx) error {
		var err error
		r, err = tx.Get(api.Key{Kind: "instance", Project: "p", Name: name})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var s api.InstanceSpec
	json.Unmarshal(r.Spec, &s)
	rep, _ := json.Marshal(api.HostReport{Host: s.Host, Compute: &api.ComputeHost{Connected: true},
		Resources: []api.ResourceReport{{Key: r.Key(), ResourceStatus: api.ResourceStatus{State: "stopped", Epoch: r.Epoch}}}})
	req, _ := http.NewRequest("POST", url+"/v1/hosts/"+s.Host+"/status", bytes.NewReader(rep))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("report of %s: %v %v", s.Host, err, resp)
	}
	resp.Body.Close()
}

// hostLine is the value of the "host:" line of instances show.
func hostLine(show string) string {
	for _, l := range strings.Split(show, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "host:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
