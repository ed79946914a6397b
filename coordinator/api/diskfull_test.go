package api

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
)

// TestFullDiskAnswers507 puts the store on a tiny tmpfs, fills it, and
// checks writes are answered 507 (never 500), change nothing, and work
// again once there is room.
func TestFullDiskAnswers507(t *testing.T) {
	testenv.RequireRoot(t, "mounts a small tmpfs to fill")
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	st, err := store.Open(filepath.Join(dir, "c.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := httptest.NewServer(New(Options{Store: st, Registry: registry.Default(), MaxWait: time.Second}))
	t.Cleanup(srv.Close)
	tok, err := IssueToken(st, api.TokenRequest{Name: "admin", Role: api.RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, srv: srv, store: st, admin: tok.Secret}
	filler := filepath.Join(dir, "filler")
	fill, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := fill.Write(buf); err != nil {
			break
		}
	}
	fill.Close()
	desc := strings.Repeat("x", registry.MaxDescriptionLen)
	full := 0
	for i := 0; i < 200 && full == 0; i++ {
		code, body := f.do(f.admin, "PUT", fmt.Sprintf("/v1/projects/p%d", i), `{"spec":{"description":"`+desc+`"}}`)
		switch code {
		case 201:
		case 507:
			full = i
			if !strings.Contains(string(body), "out of disk space") {
				t.Fatalf("507 body %s does not say why", body)
			}
		default:
			t.Fatalf("write %d on a full disk: %d %s, want 201 or 507", i, code, body)
		}
	}
	if full == 0 {
		t.Fatal("200 writes never filled a 256 KiB tmpfs")
	}
	f.must(f.admin, "GET", fmt.Sprintf("/v1/projects/p%d", full), "", 404)
	epoch := st.Epoch()
	os.Remove(filler)
	f.must(f.admin, "PUT", fmt.Sprintf("/v1/projects/p%d", full), `{"spec":{"description":"room again"}}`, 201)
	if st.Epoch() != epoch+1 {
		t.Fatalf("epoch %d after the refused write and one more, want %d", st.Epoch(), epoch+1)
	}
}
