package hatest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/coordinator/tlsca"
	"github.com/strata-infra/strata/internal/etcdtest"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
	"github.com/strata-infra/strata/pkg/gossip"
)

// syncBuffer is a log sink safe for memberlist's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// replica is one coordinator of the identity test: its own loopback
// address (127.0.0.N), the operator's certificate, TLS only.
type replica struct {
	name, ip, url, gossip, log string
}

// startReplica starts coordinator name on ip with the operator's
// certificate ca, over etcd at prefix; it stops it by PID at cleanup.
func startReplica(t *testing.T, bin, dir, name, ip, prefix string, ca tlsca.Paths, endpoints []string, keyFile string, join []string) replica {
	t.Helper()
	r := replica{name: name, ip: ip}
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(d, "coordinator.yaml")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := net.JoinHostPort(ip, fmt.Sprint(freePort(t)))
	r.gossip = net.JoinHostPort(ip, fmt.Sprint(freePort(t)))
	r.url, r.log = "https://"+listen, filepath.Join(d, "log")
	args := []string{"--config", cfg, "--name", name, "--data-dir", d, "--listen", listen,
		"--tls-cert-file", ca.Cert, "--tls-key-file", ca.Key, "--tls-ca-file", ca.CA,
		"--gossip-bind", r.gossip, "--gossip-key-file", keyFile, "--gossip-profile", "local",
		"--metrics-addr", "", "--max-wait", "5s",
		"--store", "etcd", "--etcd-endpoints", strings.Join(endpoints, ","), "--etcd-prefix", prefix}
	for _, j := range join {
		args = append(args, "--join", j)
	}
	cmd := exec.Command(bin, args...)
	logf, err := os.Create(r.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			out, _ := os.ReadFile(r.log)
			t.Logf("%s log:\n%s", name, tail(string(out), 3000))
		}
	})
	pinned, err := apiclient.NewPinned(r.url, "", ca.CA)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 60*time.Second, name+" ready over TLS", func() error {
		select {
		case <-exited:
			out, _ := os.ReadFile(r.log)
			t.Fatalf("%s exited: %s", name, tail(string(out), 2000))
		default:
		}
		resp, err := pinned.HTTP.Get(r.url + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("healthz %d", resp.StatusCode)
		}
		return nil
	})
	return r
}

// TestCoordinatorIdentities runs three coordinators over the package's
// etcd, each on its own loopback address with the operator's
// certificate, and shows:
//   - each binds its gossip name to its own address (three coordinator
//     identities in the store, and in a host's plan);
//   - a member with the gossip key that claims c2's name from another
//     address is refused by the other coordinators and by an agent's
//     mesh, which admits the three real ones, c2 at its own address;
//   - an agent's client, pinning the CA, takes its plan from each of the
//     three, and refuses a server that offers a plan under another CA
//     (a man in the middle).
func TestCoordinatorIdentities(t *testing.T) {
	testenv.RequireBinary(t, "go")
	ec := etcdtest.Require(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "strata-coordinator")
	build := exec.Command("go", "build", "-o", bin, "./coordinator/cmd/strata-coordinator")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	key, _ := gossip.GenerateKey()
	keyFile := filepath.Join(dir, "gossip.key")
	if err := gossip.WriteKeyFile(keyFile, key); err != nil {
		t.Fatal(err)
	}
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	if err := os.Mkdir(filepath.Join(dir, "ca"), 0o700); err != nil {
		t.Fatal(err)
	}
	ca, _, err := tlsca.Ensure(filepath.Join(dir, "ca"), ips)
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("/strata-id-%d-%d/", os.Getpid(), time.Now().UnixNano())
	var rs []replica
	for i, ip := range ips {
		var join []string
		if i > 0 {
			join = []string{rs[0].gossip}
		}
		rs = append(rs, startReplica(t, bin, dir, fmt.Sprintf("c%d", i+1), ip, prefix, ca, ec.Endpoints(), keyFile, join))
	}
	tok, err := os.ReadFile(filepath.Join(dir, "c1", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	admin, err := apiclient.NewPinned(rs[1].url, strings.TrimSpace(string(tok)), ca.CA)
	if err != nil {
		t.Fatal(err)
	}

	// Each coordinator's name is bound to its own address.
	var ids []api.Resource
	if err := admin.Do(ctx, http.MethodGet, "/v1/hostidentities", nil, &ids); err != nil {
		t.Fatal(err)
	}
	got := gossip.Identities(ids)
	for _, r := range rs {
		if id := got[r.name]; !id.Coordinator || id.Addr.String() != r.ip {
			t.Fatalf("identity of %s: %+v, want coordinator at %s (all: %v)", r.name, id, r.ip, got)
		}
	}

	// Host h1's agent: its credential, its identity, its plan through
	// each coordinator with the CA pinned.
	agentIP := "127.0.0.5"
	var nt api.NewToken
	if err := admin.Do(ctx, http.MethodPost, "/v1/tokens", map[string]any{"name": "agent-h1", "role": "agent", "host": "h1"}, &nt); err != nil {
		t.Fatal(err)
	}
	var plan api.Plan
	for _, r := range rs {
		ac, err := apiclient.NewPinned(r.url, nt.Secret, ca.CA)
		if err != nil {
			t.Fatal(err)
		}
		if r.name == "c1" {
			if err := ac.Do(ctx, http.MethodPut, "/v1/hosts/h1/identity", map[string]string{"addr": agentIP, "vtep": agentIP}, nil); err != nil {
				t.Fatal(err)
			}
		}
		if plan, err = ac.Plan(ctx, "h1", 0, "", 0); err != nil {
			t.Fatalf("h1's plan from %s: %v", r.name, err)
		}
	}
	var idRes []api.Resource
	for _, r := range plan.Resources {
		if r.Kind == "hostidentity" {
			idRes = append(idRes, r)
		}
	}
	planIDs := gossip.Identities(idRes)
	for _, r := range rs {
		if id := planIDs[r.name]; !id.Coordinator || id.Addr.String() != r.ip {
			t.Fatalf("identity of %s in h1's plan: %+v, want coordinator at %s", r.name, id, r.ip)
		}
	}

	// A man in the middle offers h1 a plan under another CA: refused.
	forged := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(api.Plan{Epoch: 1 << 40, Full: true})
	}))
	forged.StartTLS()
	defer forged.Close()
	mitm, err := apiclient.NewPinned(forged.URL, nt.Secret, ca.CA)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := mitm.Plan(ctx, "h1", 0, "", 0); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("plan from a server under another CA: epoch %d, err %v; want a certificate error", p.Epoch, err)
	}

	// h1's mesh: admits only registered members, from its plan.
	h1log := &syncBuffer{}
	h1Port := freePort(t)
	h1, err := gossip.New(gossip.Config{Name: "h1", BindAddr: agentIP, BindPort: h1Port, Key: key, Profile: gossip.ProfileLocal,
		Logger: slog.New(slog.NewTextHandler(h1log, nil)), Identities: planIDs, RegisteredOnly: true, Meta: gossip.Meta{Role: gossip.RoleAgent, VTEP: netip.MustParseAddr(agentIP)}})
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Shutdown()
	if _, err := h1.Join([]string{rs[0].gossip}); err != nil {
		t.Fatal(err)
	}
	alive := func(m *gossip.Member) map[string]string {
		out := map[string]string{}
		for _, p := range m.Peers() {
			if p.State == gossip.StateAlive {
				out[p.Name] = p.Addr.Addr().String()
			}
		}
		return out
	}
	testenv.WaitTrue(t, testenv.Scale(60*time.Second), "h1 sees c1, c2, c3 at their addresses", func() bool {
		a := alive(h1)
		return a["c1"] == ips[0] && a["c2"] == ips[1] && a["c3"] == ips[2]
	})

	// The impostor: the gossip key, c2's name, another address.
	impIP := "127.0.0.9"
	imp, err := gossip.New(gossip.Config{Name: "c2", BindAddr: impIP, BindPort: freePort(t), Key: key, Profile: gossip.ProfileLocal,
		Meta: gossip.Meta{Role: gossip.RoleCoordinator, APIAddr: "https://" + impIP + ":1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer imp.Shutdown()
	join := []string{net.JoinHostPort(agentIP, fmt.Sprint(h1Port))}
	for _, r := range rs {
		join = append(join, r.gossip)
	}
	if _, err := imp.Join(join); err != nil {
		t.Logf("impostor join: %v", err) // refused at every alive message: it may hear no one back
	}
	refused := func(log string) bool {
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "refused gossip member") && strings.Contains(line, "member=c2 ") && strings.Contains(line, impIP) {
				return true
			}
		}
		return false
	}
	// c2 itself refutes a claim to its own name (memberlist's own rule);
	// the others refuse it by its registered address.
	for _, r := range []replica{rs[0], rs[2]} {
		testenv.WaitTrue(t, testenv.Scale(60*time.Second), r.name+" refuses the impostor c2", func() bool {
			b, _ := os.ReadFile(r.log)
			return refused(string(b))
		})
	}
	testenv.WaitTrue(t, testenv.Scale(60*time.Second), "h1 refuses the impostor c2", func() bool { return refused(h1log.String()) })
	// h1 hears of the impostor (from the impostor, and from every
	// member it gossips with) and never takes it: c2 stays the real one
	// throughout a few probe rounds.
	deadline := time.Now().Add(testenv.Scale(5 * time.Second))
	for time.Now().Before(deadline) {
		if a := alive(h1); a["c2"] != ips[1] {
			t.Fatalf("h1's mesh took the impostor's c2: %v", a)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if slices.ContainsFunc(h1.Peers(), func(p gossip.Peer) bool { return p.Addr.Addr().String() == impIP }) {
		t.Fatalf("h1 counts a member at the impostor's address: %v", h1.Peers())
	}
	t.Logf("c1..c3 bound at %v; impostor c2 at %s refused by c1, c3 and h1, c2 kept its name; a plan under another CA refused", ips, impIP)
}
