package api

import (
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// TestMetricsSayWhatAnOperatorAsks: latency by route with long-polls
// apart, the build, and the fleet's health as gauges.
func TestMetricsSayWhatAnOperatorAsks(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "c.db"), store.Options{RetainDeltas: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := prometheus.NewRegistry()
	hosts := staticHosts{
		{Name: "h1", State: api.StateAlive}, {Name: "h2", State: api.StateAlive},
		{Name: "h3", State: api.StateDead}, {Name: "h4", State: api.StateSuspect},
	}
	srv := httptest.NewServer(New(Options{Store: st, Registry: registry.Default(), Hosts: hosts, MaxWait: time.Second, Metrics: reg}))
	t.Cleanup(srv.Close)
	f := &fixture{t: t, srv: srv, store: st}
	admin, err := IssueToken(st, api.TokenRequest{Name: "admin", Role: api.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	f.admin = admin.Secret
	f.must(f.admin, "PUT", "/v1/projects/demo", `{}`, 201)
	f.must(f.admin, "GET", "/v1/projects/demo", "", 200)
	f.must(f.admin, "GET", "/v1/projects/nope", "", 404)
	f.must(f.admin, "GET", "/v1/no/such/path", "", 404)
	f.must(f.admin, "POST", "/v1/hosts/h2/drain", `{"reason":"test"}`, 200)
	// h1 reports the current epoch; h2 reports nothing, so it lags by 2.
	f.must(f.admin, "GET", "/v1/hosts/h1/plan?since=2&wait=50ms", "", 200)
	if _, err := st.PutReport(api.HostReport{Host: "h1", AppliedEpoch: st.Epoch()}, nil); err != nil {
		t.Fatal(err)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		mf := byName[name]
		if mf == nil {
			return 0, false
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
		return 0, false
	}
	check := func(name string, labels map[string]string, want float64) {
		t.Helper()
		got, ok := value(name, labels)
		if !ok || got != want {
			t.Errorf("%s%v = %v (present %v), want %v", name, labels, got, ok, want)
		}
	}
	check("strata_coordinator_http_requests_total", map[string]string{"route": "GET /v1/projects/{name}", "code": "200"}, 1)
	check("strata_coordinator_http_requests_total", map[string]string{"route": "GET /v1/projects/{name}", "code": "404"}, 1)
	check("strata_coordinator_http_requests_total", map[string]string{"route": "unmatched", "code": "404"}, 1)
	check("strata_coordinator_plan_poll_seconds", map[string]string{"code": "200"}, 1)
	if _, ok := value("strata_coordinator_http_request_seconds", map[string]string{"route": planRoute}); ok {
		t.Errorf("plan long-polls are in the API latency histogram")
	}
	check("strata_coordinator_http_request_seconds", map[string]string{"route": "PUT /v1/projects/{name}"}, 1)
	check("strata_coordinator_hosts", map[string]string{"state": "alive"}, 2)
	check("strata_coordinator_hosts", map[string]string{"state": "dead"}, 1)
	check("strata_coordinator_hosts", map[string]string{"state": "suspect"}, 1)
	check("strata_coordinator_hosts", map[string]string{"state": "left"}, 0)
	check("strata_coordinator_hosts_drained", nil, 1)
	check("strata_coordinator_hosts_unconverged", nil, 2) // h2 and h4
	check("strata_coordinator_epoch_lag", nil, 2)
	check("strata_coordinator_gossip_members", nil, 4)
	check("strata_coordinator_epoch", nil, 2)
	if v, _ := value("strata_coordinator_store_bytes", nil); v <= 0 {
		t.Errorf("store_bytes = %v", v)
	}
	check("strata_coordinator_build_info", map[string]string{"version": "dev"}, 1)
}
