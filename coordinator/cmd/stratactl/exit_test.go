package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// exit runs stratactl as main does and returns its exit code and output.
func (c *cli) exit(args ...string) (int, string) {
	var out, errw bytes.Buffer
	code := execute(append([]string{"--endpoint", c.url, "--token-file", c.tokenFile}, args...), &out, &errw)
	return code, out.String() + errw.String()
}

func TestExitCodes(t *testing.T) {
	c := newCLI(t)
	c.must("networks", "create", "app", "-p", "p")
	for _, tc := range []struct {
		args string
		code int
		says string
	}{
		{"status", 0, "epoch:"},
		{"bogus", 1, `unknown command "bogus"`},
		{"hosts bogus", 1, `unknown command "bogus" for "stratactl hosts"`},
		{"hosts", 1, "needs a subcommand"},
		{"networks frob -p p", 1, `unknown command "frob"`},
		{"networks show nosuch -p p", 1, "not found"},
		{"networks delete nosuch -p p", 1, "not found"},
		{"hosts show nosuch", 1, "not known"},
		{"hosts drain nosuch", 1, "not known"},
		{"networks show app -p p", 0, "app"},
	} {
		code, out := c.exit(strings.Fields(tc.args)...)
		if code != tc.code || !strings.Contains(out, tc.says) {
			t.Errorf("stratactl %s: exit %d, want %d saying %q:\n%s", tc.args, code, tc.code, tc.says, out)
		}
	}
}

// Draining a drained host changes nothing, and the reason shows in hosts
// list and show; a host's failing resources show in status, hosts show and
// the resource's show.
func TestHostsDrainReasonAndFailingResources(t *testing.T) {
	c := newCLI(t)
	var pr api.PutResult
	c.json(&pr, "hosts", "drain", "h1", "--reason", "disk swap")
	epoch := pr.Epoch
	c.json(&pr, "hosts", "drain", "h1")
	if pr.Changed || pr.Epoch != epoch {
		t.Fatalf("second drain changed something: %+v (epoch was %d)", pr, epoch)
	}
	c.steps([]step{
		{args: "hosts list", want: []string{"REASON", "h1", "disk swap"}},
		{args: "hosts show h1", want: []string{"name:", "h1", "drained:", "yes (disk swap)", "failing resources:", "(none)"}},
	})

	c.must("securitygroups", "create", "web", "-p", "p")
	rep := api.HostReport{Host: "h1", Resources: []api.ResourceReport{{Key: api.Key{Kind: "securitygroup", Project: "p", Name: "web"},
		ResourceStatus: api.ResourceStatus{State: api.ResourceError, Message: "nft: table busy", Epoch: epoch + 1, Updated: time.Now()}}},
		Network: &api.NetworkHost{L2Driver: "ovs", Datapath: "netdev", DatapathReason: "no openvswitch module", FlowGeneration: 3}}
	b, _ := json.Marshal(rep)
	req, _ := http.NewRequest(http.MethodPost, c.url+"/v1/hosts/h1/status", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("report: %v %v", err, resp)
	}
	resp.Body.Close()
	c.steps([]step{
		{args: "status", want: []string{"converged: no (h1", "failing resources:", "securitygroup/p/web", "h1", "nft: table busy"}},
		{args: "hosts show h1", want: []string{"l2:", "ovs, datapath netdev (no openvswitch module), flow generation 3", "failing resources:", "securitygroup/p/web", "nft: table busy"}},
		{args: "securitygroups show web -p p", want: []string{"hosts:", "HOST", "h1", "error", "nft: table busy"}},
	})
	c.json(&pr, "hosts", "enable", "h1")
	c.json(&pr, "hosts", "enable", "h1")
	if pr.Changed {
		t.Fatalf("second enable changed something: %+v", pr)
	}
}
