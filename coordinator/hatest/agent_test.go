package hatest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/api"
)

// agent is a real strata-agent process given every coordinator, its own
// first: it long-polls that one and moves to another when it dies. It
// runs no data-plane subsystem (network driver none, no compute, no
// Ceph): it follows, applies and saves its plan, gossips its applied
// epoch and reports it, as on any host.
type agent struct {
	name  string
	dir   string
	coord *coordinator
	cmd   *exec.Cmd
}

func startAgent(t testing.TB, bin, dir, name string, c *coordinator, others []*coordinator, admin, keyFile, join string) *agent {
	t.Helper()
	a := &agent{name: name, dir: filepath.Join(dir, name), coord: c}
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var nt api.NewToken
	code, err := call("POST", c.url+"/v1/tokens", admin, api.TokenRequest{Name: "agent-" + name, Role: api.RoleAgent, Host: name}, &nt)
	if err != nil || code != http.StatusCreated {
		t.Fatalf("agent token of %s: %d %v", name, code, err)
	}
	tokenFile := filepath.Join(a.dir, "token")
	if err := os.WriteFile(tokenFile, []byte(nt.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gossipAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	urls := []string{c.url}
	for _, o := range others {
		if o != c {
			urls = append(urls, o.url)
		}
	}
	a.cmd = exec.Command(bin, "--config=", "--name", name, "--coordinator", strings.Join(urls, ","), "--coordinator-ca-file=",
		"--token-file", tokenFile, "--state-dir", filepath.Join(a.dir, "state"), "--zone", "ha", "--vtep", "127.0.0.1",
		"--gossip-bind", gossipAddr, "--join", join, "--gossip-profile", "local", "--gossip-key-file", keyFile,
		"--metrics-addr", "", "--poll-wait", "2s", "--network-driver", "none", "--log-format", "text")
	logf, err := os.Create(filepath.Join(a.dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { a.cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = a.cmd.Process.Signal(syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("agent %s log:\n%s", name, tail(a.log(), 3000))
		}
	})
	return a
}

func (a *agent) log() string {
	b, _ := os.ReadFile(filepath.Join(a.dir, "log"))
	return string(b)
}

// held is the plan the agent saved after applying it.
func (a *agent) held() (*plan.State, error) {
	return plan.Load(filepath.Join(a.dir, "state", "plan.json"))
}

// converged says why the agent does not yet hold epoch with every
// project in want, both in the plan it saved and in what it reported
// (read through coordinator via); nil once it does.
func (a *agent) converged(admin string, via *coordinator, epoch uint64, want map[string]uint64) error {
	st, err := a.held()
	if err != nil {
		return err
	}
	if st.Epoch < epoch {
		return fmt.Errorf("agent %s saved epoch %d, want %d", a.name, st.Epoch, epoch)
	}
	for name := range want {
		if _, ok := st.Resources[api.Key{Kind: "project", Name: name}.String()]; !ok {
			return fmt.Errorf("agent %s lacks acknowledged project %s", a.name, name)
		}
	}
	h, err := a.host(admin, via)
	if err != nil {
		return err
	}
	if h.Report == nil || h.Report.AppliedEpoch < epoch {
		return fmt.Errorf("agent %s reported %+v, want applied epoch %d", a.name, h.Report, epoch)
	}
	return nil
}

// host is the agent's host as coordinator via sees it.
func (a *agent) host(admin string, via *coordinator) (api.Host, error) {
	var h api.Host
	code, err := call("GET", via.url+"/v1/hosts/"+a.name, admin, nil, &h)
	if err != nil || code != 200 {
		return h, fmt.Errorf("host %s on %s: %d %v", a.name, via.name, code, err)
	}
	return h, nil
}

// moved reports whether the agent left a coordinator it could not reach
// for another.
func (a *agent) moved() bool {
	return strings.Contains(a.log(), "coordinator out of reach: moved to another")
}

// refusedOlder reports whether the agent ever refused a plan older than
// the one it applied (an epoch that went back).
func (a *agent) refusedOlder() bool {
	return strings.Contains(a.log(), "refusing plan older than the applied one")
}
