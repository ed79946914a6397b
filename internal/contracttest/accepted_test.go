package contracttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/network/planmap"
	"github.com/strata-infra/strata/agent/plan"
	coordapi "github.com/strata-infra/strata/coordinator/api"
	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

type staticHosts []api.Host

func (h staticHosts) Hosts() []api.Host { return h }

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// coordinator is a real coordinator API on a bbolt store, with three
// alive hosts in its membership view. Requests go to its HTTP handler in
// process (no loopback socket: the test spends its time on the API, not
// on TCP).
type coordinator struct {
	t     *testing.T
	h     http.Handler
	token string
}

func newCoordinator(t *testing.T) *coordinator {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "c.db"), store.Options{RetainDeltas: 64, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var view staticHosts
	for i, h := range hosts {
		view = append(view, api.Host{Name: h, State: api.StateAlive, VTEP: fmt.Sprintf("172.31.250.%d", 11+i)})
	}
	h := coordapi.New(coordapi.Options{Store: st, Registry: registry.Default(), Hosts: view, MaxWait: time.Second})
	tok, err := coordapi.IssueToken(st, api.TokenRequest{Name: "admin", Role: api.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	return &coordinator{t: t, h: h, token: tok.Secret}
}

func (c *coordinator) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(mustJSON(body))
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Authorization", "Bearer "+c.token)
	w := httptest.NewRecorder()
	c.h.ServeHTTP(w, req)
	return w.Code, w.Body.Bytes()
}

// host follows its plan as an agent does (deltas since its epoch) and runs
// the network side's checks on every epoch it reaches.
type host struct {
	self  planmap.Self
	state *plan.State
	// storage follows the storage plan, as a storage controller's host
	// does: every volume and snapshot besides its own plan.
	storage bool
}

// planPath is h's plan request after since.
func (h *host) planPath(since uint64) string {
	p := fmt.Sprintf("/v1/hosts/%s/plan?since=%d", h.self.Host, since)
	if h.storage {
		p += "&storage=true"
	}
	return p
}

// sync brings h's plan up to date and says whether it changed.
func (c *coordinator) sync(h *host) bool {
	c.t.Helper()
	code, b := c.do(http.MethodGet, h.planPath(h.state.Epoch), nil)
	if code != http.StatusOK {
		c.t.Fatalf("plan of %s: %d %s", h.self.Host, code, b)
	}
	var p api.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		c.t.Fatal(err)
	}
	if err := h.state.Apply(p); err != nil {
		c.t.Fatalf("plan of %s: %v", h.self.Host, err)
	}
	changed := p.Full
	for _, d := range p.Deltas {
		changed = changed || len(d.Changes) > 0
	}
	return changed
}

// sameAsFull checks that the plan h built from deltas is the full plan
// the coordinator would send it now: the per-host deltas never miss a
// resource that entered the host's plan, nor keep one that left it.
func (c *coordinator) sameAsFull(h *host, sd uint64, call int, history []string) {
	c.t.Helper()
	code, b := c.do(http.MethodGet, h.planPath(0), nil)
	if code != http.StatusOK {
		c.t.Fatalf("full plan of %s: %d %s", h.self.Host, code, b)
	}
	var p api.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		c.t.Fatal(err)
	}
	if p.Epoch != h.state.Epoch {
		return // committed since; compared at the next epoch
	}
	if p.Storage != h.storage {
		c.t.Fatalf("seed %d call %d: host %s asked for the storage plan %v, got %v", sd, call, h.self.Host, h.storage, p.Storage)
	}
	full := map[string]uint64{}
	for _, r := range p.Resources {
		full[r.Key().String()] = r.Epoch
	}
	for k, r := range h.state.Resources {
		if e, ok := full[k]; !ok || e != r.Epoch {
			c.t.Fatalf("seed %d call %d: host %s holds %s at epoch %d by deltas; its full plan has it: %v (epoch %d)\n%s", sd, call, h.self.Host, k, r.Epoch, ok, e, tail(history))
		}
	}
	for k := range full {
		if _, ok := h.state.Resources[k]; !ok {
			c.t.Fatalf("seed %d call %d: host %s lacks %s by deltas; its full plan has it\n%s", sd, call, h.self.Host, k, tail(history))
		}
	}
}

// seed is STRATA_CONTRACT_SEED when set, else the clock.
func seed(t *testing.T) uint64 {
	if v := os.Getenv("STRATA_CONTRACT_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("STRATA_CONTRACT_SEED=%q: %v", v, err)
		}
		return s
	}
	return uint64(time.Now().UnixNano())
}

// calls is STRATA_CONTRACT_CALLS when set, else 10,000.
func calls(t *testing.T) int {
	if v := os.Getenv("STRATA_CONTRACT_CALLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("STRATA_CONTRACT_CALLS=%q: want a positive count", v)
		}
		return n
	}
	return 10000
}

// TestAcceptedStateAlwaysApplies drives random sequences of API calls,
// valid and invalid, against a coordinator and maps every committed state
// through each host's own checks: no committed state may be one a host
// refuses. Rerun a failure with STRATA_CONTRACT_SEED=<printed seed>.
func TestAcceptedStateAlwaysApplies(t *testing.T) {
	sd, n := seed(t), calls(t)
	t.Logf("seed %d (STRATA_CONTRACT_SEED), %d calls (STRATA_CONTRACT_CALLS)", sd, n)
	c := newCoordinator(t)
	g := &gen{r: rand.New(rand.NewPCG(sd, sd^0x5eed)), projects: []string{"pa", "pb", strings.Repeat("l", 63)}}
	for _, p := range g.projects {
		if code, b := c.do(http.MethodPut, "/v1/projects/"+p, api.ResourceRequest{Name: p}); code >= 300 {
			t.Fatalf("project %s: %d %s", p, code, b)
		}
	}
	// Volumes need a type; their host plans need the instances the
	// generator does not make, so only the storage host sees them.
	if code, b := c.do(http.MethodPut, "/v1/volumetypes/default", api.ResourceRequest{Name: "default", Spec: mustJSON(api.VolumeTypeSpec{Pool: "volumes"})}); code >= 300 {
		t.Fatalf("volume type: %d %s", code, b)
	}
	remote := map[string]netip.Addr{}
	var hs []*host
	for i, h := range hosts {
		vtep := netip.AddrFrom4([4]byte{172, 31, 250, byte(11 + i)})
		remote[h] = vtep
		hs = append(hs, &host{self: planmap.Self{Host: h, VTEP: vtep, UnderlayDev: "eth0"}, state: plan.NewState()})
	}
	// h1 runs the storage controller too: a second view of h1, by the
	// storage plan.
	hs = append(hs, &host{self: hs[0].self, state: plan.NewState(), storage: true})
	storageSeen := 0
	var history []string
	codes := map[int]int{}
	epochs, checked, start := 0, 0, time.Now()
	for i := 0; i < n; i++ {
		cl := g.next()
		code, b := c.do(cl.method, cl.path, cl.body)
		codes[code]++
		history = append(history, fmt.Sprintf("%d: %s -> %d %s", i, cl, code, strings.TrimSpace(string(b))))
		if code >= 500 {
			t.Fatalf("seed %d call %d: server error\n%s", sd, i, tail(history))
		}
		if code >= 300 {
			continue
		}
		epochs++
		for _, h := range hs {
			if !c.sync(h) {
				continue // the same plan as last checked
			}
			checked++
			c.sameAsFull(h, sd, i, history)
			if h.storage {
				for _, r := range h.state.Resources {
					if r.Kind == "volume" || r.Kind == "volumesnapshot" {
						storageSeen++
					}
				}
			} else {
				for k, r := range h.state.Resources {
					if r.Kind == "volume" || r.Kind == "volumesnapshot" {
						t.Fatalf("seed %d call %d: host %s holds %s, of no instance of its", sd, i, h.self.Host, k)
					}
				}
			}
			snap := &plan.Snapshot{Epoch: h.state.Epoch}
			for _, r := range h.state.Resources {
				snap.Resources = append(snap.Resources, r)
			}
			if err := planmap.Check(snap, h.self, remote); err != nil {
				t.Fatalf("seed %d call %d: host %s refuses the committed state: %v\n%s", sd, i, h.self.Host, err, tail(history))
			}
		}
	}
	t.Logf("%d calls in %v, %d committed, %d host plans checked, answers by status: %v", n, time.Since(start).Round(time.Millisecond), epochs, checked, codes)
	if n >= 1000 && storageSeen == 0 {
		t.Fatalf("the storage host's plan never held a volume: the generator no longer exercises the storage plan")
	}
	if codes[http.StatusOK]+codes[http.StatusCreated] == 0 || epochs < n/20 {
		t.Fatalf("only %d of %d calls committed: the generator no longer exercises the contract", epochs, n)
	}
}

func tail(h []string) string {
	if len(h) > 40 {
		h = h[len(h)-40:]
	}
	return strings.Join(h, "\n")
}
