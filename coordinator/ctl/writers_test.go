package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	coordapi "github.com/strata-infra/strata/coordinator/api"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// TestConcurrentApplyNeverMixes races two clients applying different
// specs of one network. Every version the store ever committed must be
// exactly one writer's spec: the fields it gave, defaults for the ones it
// left out, and stored values only for the fields its answer named as kept.
func TestConcurrentApplyNeverMixes(t *testing.T) {
	c, st := server(t)
	ctx := context.Background()
	// host-a is registered (an agent token speaks for it), so a network
	// may name it.
	if _, err := coordapi.IssueToken(st, api.TokenRequest{Name: "host-a", Role: api.RoleAgent, Host: "host-a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(ctx, c, mustParse(t, "kind: project\nname: p\n"), nil); err != nil {
		t.Fatal(err)
	}
	writers := map[string]string{
		// A places DHCP itself and sets the MTU; B gives only an MTU.
		"a": "kind: network\nproject: p\nname: n\nspec:\n  mtu: 1400\n  dhcp_host: host-a\n",
		"b": "kind: network\nproject: p\nname: n\nspec:\n  mtu: 1300\n",
	}
	const rounds = 40
	type ack struct {
		writer string
		res    Result
	}
	var mu sync.Mutex
	var acks []ack
	var wg sync.WaitGroup
	for name, doc := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				rs, err := Apply(ctx, c, mustParse(t, doc), nil)
				if err != nil {
					t.Errorf("writer %s: %v", name, err)
					return
				}
				mu.Lock()
				acks = append(acks, ack{name, rs[0]})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	versions := networkVersions(t, st)
	changed := 0
	for _, a := range acks {
		if a.res.Action == Unchanged {
			continue
		}
		changed++
		got, ok := versions[a.res.Epoch]
		if !ok {
			t.Fatalf("writer %s acknowledged epoch %d, which holds no version of the network", a.writer, a.res.Epoch)
		}
		want := api.NetworkSpec{Type: "vxlan", MTU: 1300, SegmentationID: got.SegmentationID}
		if a.writer == "a" {
			want.MTU, want.DHCPHost = 1400, "host-a"
		}
		if slices.Contains(a.res.Kept, "spec.dhcp_host") {
			want.DHCPHost = got.DHCPHost
		}
		if a.res.Action == Updated && !slices.Contains(a.res.Kept, "spec.segmentation_id") {
			t.Errorf("epoch %d: writer %s's update kept the VNI without saying so (kept %v)", a.res.Epoch, a.writer, a.res.Kept)
		}
		if got != want {
			t.Errorf("epoch %d: writer %s stored %+v, want exactly %+v (kept %v)", a.res.Epoch, a.writer, got, want, a.res.Kept)
		}
	}
	if changed < 2 {
		t.Fatalf("only %d acknowledged changes; the writers never raced", changed)
	}
	t.Logf("%d writes, %d changed the network, %d versions committed", len(acks), changed, len(versions))
}

func mustParse(t *testing.T, doc string) []Doc {
	t.Helper()
	docs, err := ParseManifest(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// networkVersions reads every committed version of network p/n from the
// store's delta log, by epoch.
func networkVersions(t *testing.T, st *store.Store) map[uint64]api.NetworkSpec {
	t.Helper()
	p, err := st.Plan("any", 1, func(api.Resource) bool { return true })
	if err != nil || p.Full {
		t.Fatalf("delta log: full=%v err=%v", p.Full, err)
	}
	out := map[uint64]api.NetworkSpec{}
	for _, d := range p.Deltas {
		for _, ch := range d.Changes {
			if ch.Resource.Kind != "network" || ch.Op != api.OpPut {
				continue
			}
			var s api.NetworkSpec
			if err := json.Unmarshal(ch.Resource.Spec, &s); err != nil {
				t.Fatal(fmt.Errorf("epoch %d: %w", d.Epoch, err))
			}
			out[d.Epoch] = s
		}
	}
	return out
}

// TestModifyRetriesOnAConcurrentWrite: a read-modify-write that loses the
// race re-reads and re-applies its edit, so neither change is lost.
func TestModifyRetriesOnAConcurrentWrite(t *testing.T) {
	c, _ := server(t)
	ctx := context.Background()
	if _, err := Apply(ctx, c, mustParse(t, "kind: project\nname: p\nspec:\n  description: a\n"), nil); err != nil {
		t.Fatal(err)
	}
	path := "/v1/projects/p"
	calls := 0
	pr, err := c.Modify(ctx, path, func(r api.Resource) (json.RawMessage, error) {
		calls++
		var s api.ProjectSpec
		_ = json.Unmarshal(r.Spec, &s)
		if calls == 1 {
			// Another writer gets in between this read and its write.
			if _, err := Apply(ctx, c, mustParse(t, "kind: project\nname: p\nspec:\n  description: ab\n"), nil); err != nil {
				return nil, err
			}
		}
		s.Description += "+c"
		return json.Marshal(s)
	})
	if err != nil {
		t.Fatal(err)
	}
	var s api.ProjectSpec
	_ = json.Unmarshal(pr.Resource.Spec, &s)
	if calls != 2 || s.Description != "ab+c" {
		t.Fatalf("after %d edits the description is %q, want 2 edits and \"ab+c\"", calls, s.Description)
	}
}
