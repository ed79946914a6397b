package hatest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/etcdtest"
	"github.com/strata-infra/strata/internal/testenv"
)

// A three-member etcd for the package.
func TestMain(m *testing.M) { etcdtest.Main(m, 3) }

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// coordinator is one strata-coordinator process.
type coordinator struct {
	name   string
	url    string
	dir    string
	args   []string
	bin    string
	cmd    *exec.Cmd
	exited chan struct{}
	dead   atomic.Bool
}

func startCoordinator(t testing.TB, bin, dir, name, prefix string, endpoints []string, keyFile string, join []string) (*coordinator, string) {
	t.Helper()
	c := &coordinator{name: name, dir: filepath.Join(dir, name), bin: bin}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(c.dir, "coordinator.yaml")
	if err := os.WriteFile(cfg, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	gossipAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	c.url = "http://" + listen
	c.args = []string{"--config", cfg, "--name", name, "--data-dir", c.dir, "--listen", listen, "--insecure-http",
		"--gossip-bind", gossipAddr, "--gossip-key-file", keyFile, "--gossip-profile", "local",
		"--metrics-addr", "", "--max-wait", "5s",
		"--store", "etcd", "--etcd-endpoints", strings.Join(endpoints, ","), "--etcd-prefix", prefix}
	for _, j := range join {
		c.args = append(c.args, "--join", j)
	}
	c.start(t)
	return c, gossipAddr
}

// start runs the coordinator's process (again, after a kill: same
// addresses, same data dir) and waits until it answers.
func (c *coordinator) start(t testing.TB) {
	t.Helper()
	c.cmd = exec.Command(c.bin, c.args...)
	logf, err := os.OpenFile(filepath.Join(c.dir, "log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stdout, c.cmd.Stderr = logf, logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	c.exited = exited
	cmd := c.cmd
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
			out, _ := os.ReadFile(filepath.Join(c.dir, "log"))
			t.Logf("%s log:\n%s", c.name, tail(string(out), 3000))
		}
	})
	testenv.WaitFor(t, 60*time.Second, c.name+" ready", func() error {
		select {
		case <-exited:
			out, _ := os.ReadFile(filepath.Join(c.dir, "log"))
			t.Fatalf("%s exited: %s", c.name, tail(string(out), 2000))
		default:
		}
		resp, err := http.Get(c.url + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("healthz %d", resp.StatusCode)
		}
		return nil
	})
	c.dead.Store(false)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (c *coordinator) kill() {
	c.dead.Store(true)
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
}

var httpc = &http.Client{Timeout: 10 * time.Second}

func call(method, url, token string, body any, out any) (int, error) {
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode < 300 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}
