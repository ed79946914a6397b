package apiclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// TestFailover: a client given several coordinators moves past one that
// refuses connections, and past one that dies mid-answer for a plan
// long-poll (asked again from the same epoch), but never re-sends a POST
// that may have been acted on; it stays with the one that answered.
func TestFailover(t *testing.T) {
	var asked atomic.Value
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Store(r.URL.RawQuery)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"host":"h1","epoch":7}`))
	}))
	defer live.Close()
	refused := httptest.NewServer(http.NotFoundHandler())
	refusedURL := refused.URL
	refused.Close() // nothing listens there now
	var cut atomic.Int32
	dying := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cut.Add(1)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close() // killed mid-request
		}
	}))
	defer dying.Close()

	c := New(refusedURL+", "+live.URL+"/", "tok")
	if len(c.Endpoints) != 2 || c.Endpoints[1] != live.URL {
		t.Fatalf("endpoints %q", c.Endpoints)
	}
	var switched []string
	c.OnSwitch = func(from, to string, err error) { switched = append(switched, from+" -> "+to) }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := c.Plan(ctx, "h1", 5, "", time.Second)
	if err != nil || p.Epoch != 7 {
		t.Fatalf("plan past a refusing coordinator: %+v %v", p, err)
	}
	if c.Current() != live.URL || len(switched) != 1 {
		t.Fatalf("current %s, switched %v", c.Current(), switched)
	}

	c = New(dying.URL+","+live.URL, "tok")
	if p, err := c.Plan(ctx, "h1", 5, "", time.Second); err != nil || p.Epoch != 7 {
		t.Fatalf("plan past a coordinator dying mid-answer: %+v %v", p, err)
	}
	if q, _ := asked.Load().(string); q == "" || !contains(q, "since=5") {
		t.Fatalf("the next coordinator was asked %q, want since=5 (the agent's place)", q)
	}
	// A POST cut off mid-request may have been acted on: not re-sent.
	c = New(dying.URL+","+live.URL, "tok")
	before := cut.Load()
	err = c.Report(ctx, api.HostReport{Host: "h1"})
	if err == nil || cut.Load() != before+1 || c.Current() != dying.URL {
		t.Fatalf("a POST cut off mid-request: err %v, sent %d times, current %s", err, cut.Load()-before, c.Current())
	}
	// A POST that never reached a coordinator goes to the next.
	c = New(refusedURL+","+live.URL, "tok")
	if err := c.Report(ctx, api.HostReport{Host: "h1"}); err != nil {
		t.Fatalf("a POST past a refusing coordinator: %v", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
