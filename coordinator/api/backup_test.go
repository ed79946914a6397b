package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

func (f *fixture) plan(host string, since uint64, history string) (int, api.Plan) {
	f.t.Helper()
	path := fmt.Sprintf("/v1/hosts/%s/plan?since=%d", host, since)
	if history != "" {
		path += "&history=" + history
	}
	code, b := f.do(f.admin, "GET", path, "")
	var p api.Plan
	_ = json.Unmarshal(b, &p)
	return code, p
}

func widgets(p api.Plan) map[string]bool {
	out := map[string]bool{}
	for _, r := range p.Resources {
		if r.Kind == "widget" {
			out[r.Name] = true
		}
	}
	return out
}

// TestBackupRestoreFencing: an online backup over the API, more writes,
// then (1) an older copy of the store started by mistake is refused to a
// host that is ahead of it, and (2) the same copy restored on purpose is
// a new history: the host is sent the full restored plan at an epoch past
// its own, and deltas follow from there.
func TestBackupRestoreFencing(t *testing.T) {
	f := newFixture(t)
	f.must(f.admin, "PUT", "/v1/projects/a", `{}`, 201)
	f.must(f.admin, "PUT", "/v1/projects/a/widgets/w1", `{"spec":{"size":1,"host":"h1"}}`, 201)
	dir := t.TempDir()
	backup := filepath.Join(dir, "backup.db")
	req, _ := http.NewRequest("GET", f.srv.URL+"/v1/backup", nil)
	req.Header.Set("Authorization", "Bearer "+f.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("backup: %v %v", resp, err)
	}
	out, _ := os.Create(backup)
	io.Copy(out, resp.Body)
	out.Close()
	resp.Body.Close()
	if resp.Trailer.Get("X-Strata-Epoch") != "2" || resp.Header.Get("X-Strata-History") != f.store.History() {
		t.Fatalf("backup epoch %q history %q", resp.Trailer.Get("X-Strata-Epoch"), resp.Header.Get("X-Strata-History"))
	}
	if code, _ := f.do("", "GET", "/v1/backup", ""); code != 401 {
		t.Fatalf("backup without a token: %d", code)
	}
	// After the backup: w2 on h1, and h1 applies everything.
	f.must(f.admin, "PUT", "/v1/projects/a/widgets/w2", `{"spec":{"size":2,"host":"h1"}}`, 201)
	_, hp := f.plan("h1", 0, "")
	hostEpoch, hostHistory := hp.Epoch, hp.History
	if hostEpoch != 3 || hostHistory == "" || !widgets(hp)["w2"] {
		t.Fatalf("host plan before the restore: %+v", hp)
	}

	// (1) The backup file started as the store, by mistake: refused.
	copyPath := filepath.Join(dir, "copy.db")
	b, _ := os.ReadFile(backup)
	os.WriteFile(copyPath, b, 0o600)
	stale, err := store.Open(copyPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sf := serve(t, stale)
	sf.admin = f.admin
	if code, _ := sf.plan("h1", hostEpoch, hostHistory); code != 409 {
		t.Fatalf("older copy of the same history: %d, want 409", code)
	}
	if stale.Epoch() != 2 {
		t.Fatalf("refusing moved the epoch to %d", stale.Epoch())
	}
	stale.Close()

	// (2) Restored on purpose: a new history.
	restored := filepath.Join(dir, "restored.db")
	res, err := store.Restore(backup, restored)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(restored, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rf := serve(t, st)
	rf.admin = f.admin
	if res.Epoch != 2 || st.History() == hostHistory {
		t.Fatalf("restore result %+v, history %s", res, st.History())
	}
	code, p := rf.plan("h1", hostEpoch, hostHistory)
	if code != 200 || !p.Full || p.Epoch <= hostEpoch || p.History != st.History() {
		t.Fatalf("host from before the restore: %d %+v; want a full plan past epoch %d", code, p, hostEpoch)
	}
	if w := widgets(p); !w["w1"] || w["w2"] {
		t.Fatalf("restored plan widgets %v, want w1 only", w)
	}
	// The host now follows the new history by deltas.
	rf.must(f.admin, "PUT", "/v1/projects/a/widgets/w3", `{"spec":{"size":3,"host":"h1"}}`, 201)
	code, d := rf.plan("h1", p.Epoch, p.History)
	if code != 200 || d.Full || len(d.Deltas) != 1 || d.Epoch != p.Epoch+1 {
		t.Fatalf("after the restore: %d %+v, want one delta", code, d)
	}
	// A host still at an epoch inside the jump gets a full plan, not a
	// broken delta chain.
	if _, p2 := rf.plan("h2", 1, p.History); !p2.Full {
		t.Fatalf("host behind the jump: %+v, want a full plan", p2)
	}
}
