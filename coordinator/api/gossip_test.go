package api

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/gossip"
)

func TestRotateGossipKeyInThreeSteps(t *testing.T) {
	f := newFixture(t)
	f.must(f.admin, "POST", "/v1/gossip/rotate-key", "", 409) // nothing stored yet
	old, _ := gossip.GenerateKey()
	ring, _ := json.Marshal(api.ResourceRequest{Spec: mustJSON(gossip.EncodeKeyring([][]byte{old}, old))})
	f.must(f.admin, "PUT", "/v1/gossipkeyrings/cluster", string(ring), 201)
	start := f.store.Epoch()

	var res api.GossipRotateResult
	json.Unmarshal(f.must(f.admin, "POST", "/v1/gossip/rotate-key?timeout=5s", "", 200), &res)
	if res.Epoch != start+3 {
		t.Fatalf("rotation ended at epoch %d, want three commits after %d", res.Epoch, start)
	}
	var r api.Resource
	json.Unmarshal(f.must(f.admin, "GET", "/v1/gossipkeyrings/cluster", "", 200), &r)
	var spec api.GossipKeyringSpec
	json.Unmarshal(r.Spec, &spec)
	keys, primary, err := gossip.DecodeKeyring(spec)
	if err != nil || len(keys) != 1 || string(primary) == string(old) || KeyFingerprint(primary) != res.Primary {
		t.Fatalf("keyring after rotation: %+v (%v), result %+v", spec, err, res)
	}
	// Each step is in every host's plan.
	var p api.Plan
	json.Unmarshal(f.must(f.admin, "GET", "/v1/hosts/h7/plan?since="+jsonNum(start), "", 200), &p)
	if len(p.Deltas) != 3 {
		t.Fatalf("h7 got %d keyring deltas, want 3", len(p.Deltas))
	}
	// Project and agent tokens may not rotate or read keys.
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	var nt api.NewToken
	json.Unmarshal(f.must(f.admin, "POST", "/v1/tokens", `{"name":"a","role":"project","project":"a"}`, 201), &nt)
	f.must(nt.Secret, "POST", "/v1/gossip/rotate-key", "", 403)
	f.must(nt.Secret, "GET", "/v1/gossipkeyrings/cluster", "", 403)
	// A bad keyring is refused naming the field.
	f.must(f.admin, "PUT", "/v1/gossipkeyrings/cluster", `{"spec":{"keys":["c2hvcnQ="],"primary":"c2hvcnQ="}}`, 400)
}

func TestHostIdentityNeedsTheHostsCredential(t *testing.T) {
	f := newFixture(t)
	var nt api.NewToken
	json.Unmarshal(f.must(f.admin, "POST", "/v1/tokens", `{"name":"agent-h1","role":"agent","host":"h1"}`, 201), &nt)
	f.must(nt.Secret, "PUT", "/v1/hosts/h1/identity", `{"addr":"10.0.0.1","vtep":"10.0.0.1"}`, 200)
	f.must(nt.Secret, "PUT", "/v1/hosts/h2/identity", `{"addr":"10.0.0.66","vtep":"10.0.0.66"}`, 403)
	for _, bad := range []string{`{"addr":"fe80::1%eth0"}`, `{"addr":"010.0.0.1"}`, `{"addr":"10.0.0.1","vtep":"x"}`, `{}`} {
		f.must(nt.Secret, "PUT", "/v1/hosts/h1/identity", bad, 400)
	}
	var p api.Plan
	json.Unmarshal(f.must(nt.Secret, "GET", "/v1/hosts/h1/plan?since=0", "", 200), &p)
	ids := gossip.Identities(p.Resources)
	if len(ids) != 1 || ids["h1"].Addr.String() != "10.0.0.1" {
		t.Fatalf("identities in h1's plan: %v", ids)
	}
}

// TestCoordinatorIdentityKeepsItsName: a coordinator's gossip name, bound
// from its store, cannot be registered by any host's agent (even one an
// admin issued a token for under that name), nor can an agent claim the
// coordinator role; a coordinator cannot take a registered host's name;
// agents get the coordinator's identity in their plans.
func TestCoordinatorIdentityKeepsItsName(t *testing.T) {
	f := newFixture(t)
	_, _, err := f.store.Update(func(tx *store.Tx) error {
		_, err := registry.RegisterCoordinator(tx, "coord1", netip.MustParseAddr("10.0.0.5"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var nt, ct api.NewToken
	json.Unmarshal(f.must(f.admin, "POST", "/v1/tokens", `{"name":"agent-h1","role":"agent","host":"h1"}`, 201), &nt)
	json.Unmarshal(f.must(f.admin, "POST", "/v1/tokens", `{"name":"agent-coord1","role":"agent","host":"coord1"}`, 201), &ct)
	code, body := f.do(nt.Secret, "PUT", "/v1/hosts/h1/identity", `{"addr":"10.0.0.1","role":"coordinator"}`)
	var eb api.ErrorBody
	if json.Unmarshal(body, &eb); code != 400 || eb.Error == nil || eb.Error.Field != "role" {
		t.Fatalf("agent claiming the coordinator role: %d %s, want 400 naming role", code, body)
	}
	f.must(ct.Secret, "PUT", "/v1/hosts/coord1/identity", `{"addr":"10.0.0.66","vtep":"10.0.0.66"}`, 409)
	f.must(nt.Secret, "PUT", "/v1/hosts/h1/identity", `{"addr":"10.0.0.1","vtep":"10.0.0.1"}`, 200)
	_, _, err = f.store.Update(func(tx *store.Tx) error {
		_, err := registry.RegisterCoordinator(tx, "h1", netip.MustParseAddr("10.0.0.5"))
		return err
	})
	if _, ok := err.(*registry.Conflict); !ok {
		t.Fatalf("coordinator taking host h1's name: %v, want a conflict", err)
	}
	var p api.Plan
	json.Unmarshal(f.must(nt.Secret, "GET", "/v1/hosts/h1/plan?since=0", "", 200), &p)
	ids := gossip.Identities(p.Resources)
	if c := ids["coord1"]; !c.Coordinator || c.Addr.String() != "10.0.0.5" || ids["h1"].Coordinator {
		t.Fatalf("identities in h1's plan: %+v", ids)
	}
	// An admin's own write is checked the same way.
	f.must(f.admin, "PUT", "/v1/hostidentities/x", `{"spec":{"addr":"10.0.0.7","role":"boss"}}`, 400)
	f.must(f.admin, "PUT", "/v1/hostidentities/x", `{"spec":{"addr":"10.0.0.7","vtep":"10.0.0.7","role":"coordinator"}}`, 400)
}

func mustJSON(v any) json.RawMessage { b, _ := json.Marshal(v); return b }

func jsonNum(n uint64) string { b, _ := json.Marshal(n); return string(b) }
