package api

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMutationsLogWhoMadeThem: every change the API commits is logged with
// the token that made it, so an operator can answer "who deleted this?".
func TestMutationsLogWhoMadeThem(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "c.db"), store.Options{RetainDeltas: 5})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var logs lockedBuffer
	srv := httptest.NewServer(New(Options{Store: st, Registry: registry.Default(), Hosts: staticHosts{}, MaxWait: time.Second,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))}))
	t.Cleanup(srv.Close)
	f := &fixture{t: t, srv: srv, store: st}
	admin, err := IssueToken(st, api.TokenRequest{Name: "ops-admin", Role: api.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	f.must(admin.Secret, "PUT", "/v1/projects/demo", `{"spec":{"description":"d"}}`, 201)
	var tok api.NewToken
	json.Unmarshal(f.must(admin.Secret, "POST", "/v1/tokens", `{"name":"demo-ci","role":"project","project":"demo"}`, 201), &tok)
	f.must(tok.Secret, "PUT", "/v1/projects/demo/securitygroups/web", `{"spec":{}}`, 201)
	f.must(tok.Secret, "DELETE", "/v1/projects/demo/securitygroups/web", "", 200)
	f.must(admin.Secret, "DELETE", "/v1/tokens/"+tok.ID, "", 200)

	type by struct{ Token, Token_ID, Role, Project string }
	want := []struct {
		msg, key string
		by       by
	}{
		{"resource written", "project/demo", by{Token: "ops-admin", Token_ID: admin.ID, Role: "admin"}},
		{"token created", "", by{Token: "ops-admin", Token_ID: admin.ID, Role: "admin"}},
		{"resource written", "securitygroup/demo/web", by{Token: "demo-ci", Token_ID: tok.ID, Role: "project", Project: "demo"}},
		{"resource deleted", "securitygroup/demo/web", by{Token: "demo-ci", Token_ID: tok.ID, Role: "project", Project: "demo"}},
		{"token deleted", "", by{Token: "ops-admin", Token_ID: admin.ID, Role: "admin"}},
	}
	var got []string
	i := 0
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec struct {
			Msg, Key string
			By       *by
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec.By == nil {
			continue
		}
		got = append(got, line)
		if i < len(want) && rec.Msg == want[i].msg && rec.Key == want[i].key && *rec.By == want[i].by {
			i++
		}
	}
	if i != len(want) {
		t.Fatalf("matched %d of %d audit lines; next wanted %+v; lines with \"by\":\n%s", i, len(want), want[min(i, len(want)-1)], strings.Join(got, "\n"))
	}
}
