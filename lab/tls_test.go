package lab

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/coordinator/tlsca"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

// TestTLSEverywhere: the lab runs on TLS (the agent and stratactl pin the
// coordinator's own CA); there is no plaintext API listener; a client
// pinning another CA, or without a token, is refused; and plain HTTP on a
// non-loopback address is refused at start.
func TestTLSEverywhere(t *testing.T) {
	l := upLab(t, 1, 100)
	ctx := context.Background()

	plain := &http.Client{Timeout: 5 * time.Second}
	if resp, err := plain.Get("http://" + l.BridgeAddr().String() + ":7070/v1/openapi.json"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("the API answers plain HTTP")
		}
	}

	other, _, err := tlsca.Ensure(t.TempDir(), []string{l.BridgeAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	admin, err := l.AdminToken()
	if err != nil {
		t.Fatal(err)
	}
	wrong, err := apiclient.NewPinned(l.Endpoint(), admin, other.CA)
	if err != nil {
		t.Fatal(err)
	}
	var uae x509.UnknownAuthorityError
	if err := wrong.Do(ctx, http.MethodGet, "/v1/status", nil, nil); !errors.As(err, &uae) {
		t.Fatalf("a client pinning another CA: %v, want an unknown authority error", err)
	}
	anon, err := apiclient.NewPinned(l.Endpoint(), "", l.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	var ae *api.Error
	if err := anon.Do(ctx, http.MethodGet, "/v1/status", nil, nil); !errors.As(err, &ae) || ae.Code != http.StatusUnauthorized {
		t.Fatalf("no token: %v, want 401", err)
	}
	if _, err := apiclient.NewPinned("http://"+l.BridgeAddr().String()+":7070", admin, ""); err == nil {
		t.Fatal("the client took plain HTTP to a non-loopback address")
	}
	fp, err := tlsca.Fingerprint(l.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	if b := readLog(l, "coordinator"); !strings.Contains(b, fp) {
		t.Fatalf("the coordinator's log does not print its CA fingerprint %s", fp)
	}

	out, err := exec.Command(l.bin("strata-coordinator"), "--config=", "--name", "c2", "--data-dir", filepath.Join(t.TempDir(), "c2"),
		"--listen", l.BridgeAddr().String()+":7071", "--insecure-http", "--gossip-key-file", filepath.Join(l.Dir, "gossip.key")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "insecure_http") {
		t.Fatalf("plain HTTP on %s: %v %s, want a refusal naming insecure_http", l.BridgeAddr(), err, out)
	}
	t.Logf("API on TLS with CA sha256 %s; plain HTTP, another CA and no token refused", fp)
}

func readLog(l *Lab, who string) string {
	b, _ := os.ReadFile(l.logFile(who))
	return string(b)
}
