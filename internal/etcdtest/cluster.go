// Package etcdtest runs a real etcd cluster (Debian's etcd-server) on
// loopback for tests: one, or three members to kill and restart. Members
// are started as processes of their own and stopped by PID; their data
// dirs live under the cluster's directory, which the caller removes.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/strata-infra/strata/internal/testenv"
)

// Member is one etcd process.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	dir       string
	cmd       *exec.Cmd
	exited    chan struct{}
}

// Cluster is a set of members on loopback.
type Cluster struct {
	Dir     string
	Members []*Member
	token   string
	// BringUp is how long the cluster took to answer a write.
	BringUp time.Duration
}

// Available says why etcd cannot run here ("" when it can).
func Available() string {
	if _, err := testenv.LookBinary("etcd"); err != nil {
		return "etcd is not installed (Debian package etcd-server; coordinator/store/testdeps.sh installs it)"
	}
	return ""
}

// freePorts returns n loopback TCP ports free at the time of the call.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// Start starts an n-member cluster under dir and waits until it takes a
// write.
func Start(dir string, n int) (*Cluster, error) {
	start := time.Now()
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, token: fmt.Sprintf("strata-test-%d-%d", os.Getpid(), start.UnixNano())}
	var initial []string
	for i := range n {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i+1),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}
		m.dir = filepath.Join(dir, m.Name)
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for _, m := range c.Members {
		if err := c.spawn(m, strings.Join(initial, ","), "new"); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if err := c.WaitWritable(time.Duration(testenv.Scale(60 * time.Second))); err != nil {
		c.Stop()
		return nil, err
	}
	c.BringUp = time.Since(start)
	return c, nil
}

func (c *Cluster) spawn(m *Member, initial, state string) error {
	bin, err := testenv.LookBinary("etcd")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return err
	}
	cmd := exec.Command(bin,
		"--name", m.Name, "--data-dir", filepath.Join(m.dir, "data"),
		"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
		"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
		"--initial-cluster-token", c.token, "--initial-cluster", initial,
		"--initial-cluster-state", state,
		// A commit writes every resource it touches in one transaction.
		"--max-txn-ops", "10000",
		"--logger", "zap", "--log-outputs", filepath.Join(m.dir, "etcd.log"), "--log-level", "warn",
	)
	// Its own process group, killed with the test binary if that dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd %s: %w", m.Name, err)
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	go func(done chan struct{}) { cmd.Wait(); close(done) }(m.exited)
	return nil
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Client returns a client of every member; the caller closes it.
func (c *Cluster) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// WaitWritable waits until a put through any member succeeds.
func (c *Cluster) WaitWritable(limit time.Duration) error {
	cl, err := c.Client()
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = testenv.Poll(limit, func() error {
		for _, m := range c.Members {
			select {
			case <-m.exited:
				if !m.killed() {
					return fmt.Errorf("etcd %s exited (log %s)", m.Name, filepath.Join(m.dir, "etcd.log"))
				}
			default:
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cl.Put(ctx, "/etcdtest/ready", "1")
		return err
	})
	return err
}

func (m *Member) killed() bool { return m.cmd != nil && m.cmd.ProcessState != nil }

// Leader returns the index of the current leader.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	cl, err := c.Client()
	if err != nil {
		return -1, err
	}
	defer cl.Close()
	for i, m := range c.Members {
		select {
		case <-m.exited:
			continue
		default:
		}
		st, err := cl.Status(ctx, m.ClientURL)
		if err != nil {
			continue
		}
		if st.Leader == st.Header.MemberId {
			return i, nil
		}
	}
	return -1, errors.New("no member is leader")
}

// Kill SIGKILLs member i by PID and waits until it is gone.
func (c *Cluster) Kill(i int) {
	m := c.Members[i]
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
}

// Restart starts a killed member again on its data dir.
func (c *Cluster) Restart(i int) error {
	var initial []string
	for _, m := range c.Members {
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	return c.spawn(c.Members[i], strings.Join(initial, ","), "existing")
}

// Stop ends every member by PID (SIGTERM, then SIGKILL after 10 s).
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		if m.cmd == nil {
			continue
		}
		select {
		case <-m.exited:
			continue
		default:
		}
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
		case <-time.After(10 * time.Second):
			_ = m.cmd.Process.Signal(syscall.SIGKILL)
			<-m.exited
		}
	}
}
