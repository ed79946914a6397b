package lab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
)

// notifyMsg is one datagram a service sent to its notify socket, with what
// the test found when it arrived (for READY=1: was the service ready?).
type notifyMsg struct {
	text string
	at   time.Time
	// notReady is why the service was not actually ready when its READY=1
	// arrived; "" when it was.
	notReady string
}

// notifySocket stands in for systemd: a unixgram socket a service gets as
// NOTIFY_SOCKET. Every READY=1 is checked with readyCheck the moment it
// arrives, before the next datagram is read.
type notifySocket struct {
	path       string
	conn       *net.UnixConn
	readyCheck func() error
	mu         sync.Mutex
	msgs       []notifyMsg
}

func listenNotify(t *testing.T, dir, name string) *notifySocket {
	t.Helper()
	s := &notifySocket{path: filepath.Join(dir, name+".notify")}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	s.conn = c
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			m := notifyMsg{text: string(buf[:n]), at: time.Now()}
			s.mu.Lock()
			check := s.readyCheck
			s.mu.Unlock()
			if strings.Contains(m.text, "READY=1") && check != nil {
				if err := check(); err != nil {
					m.notReady = err.Error()
				}
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
		}
	}()
	return s
}

// expect sets the readiness check for the next READY=1 and forgets the
// messages so far.
func (s *notifySocket) expect(check func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readyCheck, s.msgs = check, nil
}

// wait returns the messages once one contains want.
func (s *notifySocket) wait(t *testing.T, limit time.Duration, want string) []notifyMsg {
	t.Helper()
	limit = testenv.Scale(limit)
	deadline := time.Now().Add(limit)
	for {
		s.mu.Lock()
		msgs := append([]notifyMsg(nil), s.msgs...)
		s.mu.Unlock()
		for _, m := range msgs {
			if strings.Contains(m.text, want) {
				return msgs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %q in %s; got %q", filepath.Base(s.path), want, limit, texts(msgs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func texts(msgs []notifyMsg) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.text)
	}
	return out
}

// checkSequence checks msgs against systemd's protocol as Strata speaks
// it: watchdog pings (allowed before READY only when pingsBefore), exactly
// one READY=1 with a STATUS, found ready when it arrived, more pings, and
// STOPPING=1 last when stopped. It returns READY's STATUS.
func checkSequence(t *testing.T, who string, msgs []notifyMsg, pingsBefore, stopped bool) string {
	t.Helper()
	ready, pingsAfter := -1, 0
	var status string
	for i, m := range msgs {
		switch {
		case strings.Contains(m.text, "READY=1"):
			if ready >= 0 {
				t.Errorf("%s: a second READY=1 (%q)", who, m.text)
			}
			ready = i
			if m.notReady != "" {
				t.Errorf("%s: READY=1 arrived while not ready: %s", who, m.notReady)
			}
			for _, l := range strings.Split(m.text, "\n") {
				if v, ok := strings.CutPrefix(l, "STATUS="); ok {
					status = v
				}
			}
			if status == "" {
				t.Errorf("%s: READY=1 without a STATUS= line: %q", who, m.text)
			}
		case m.text == "WATCHDOG=1":
			if ready < 0 && !pingsBefore {
				t.Errorf("%s: a watchdog ping before READY=1", who)
			}
			if ready >= 0 {
				pingsAfter++
			}
		case m.text == "STOPPING=1":
			if !stopped || i != len(msgs)-1 {
				t.Errorf("%s: STOPPING=1 at message %d of %q", who, i, texts(msgs))
			}
			if ready < 0 {
				t.Errorf("%s: STOPPING=1 before READY=1", who)
			}
		default:
			t.Errorf("%s: unexpected notify message %q", who, m.text)
		}
	}
	if ready < 0 {
		t.Errorf("%s: never sent READY=1; got %q", who, texts(msgs))
	}
	if pingsAfter == 0 {
		t.Errorf("%s: no watchdog ping after READY=1 (WATCHDOG_USEC set); got %q", who, texts(msgs))
	}
	if stopped && (len(msgs) == 0 || msgs[len(msgs)-1].text != "STOPPING=1") {
		t.Errorf("%s: stopped by SIGTERM without STOPPING=1 last; got %q", who, texts(msgs))
	}
	return status
}

const notifyManifest = `
kind: project
name: sd
---
kind: network
project: sd
name: net
---
kind: subnet
project: sd
name: sub
spec: {network: net, cidr: 10.72.0.0/24}
---
kind: port
project: sd
name: p
spec: {network: net, host: h1, owner: endpoint}
`

// TestSystemdReadiness runs the real coordinator and agent with a notify
// socket, as systemd's Type=notify units do (WatchdogSec set), and checks
// that READY=1 comes only when each is ready: the coordinator once its API
// answers, the agent once it has applied the coordinator's current epoch,
// also after a restart with a saved plan that fell behind (the endpoint
// and DHCP committed while it was down exist when READY=1 arrives). Each
// pings the watchdog and says STOPPING=1 on SIGTERM.
func TestSystemdReadiness(t *testing.T) {
	l := testLab(t, 1, 50)
	dir := t.TempDir()
	sockets := map[string]*notifySocket{"coordinator": listenNotify(t, dir, "coordinator"), "h1": listenNotify(t, dir, "h1")}
	l.Env = func(name string) []string {
		return []string{"NOTIFY_SOCKET=" + sockets[name].path, "WATCHDOG_USEC=1000000"}
	}
	ctx := context.Background()
	apiAnswers := func() error {
		c, err := apiclient.NewPinned(l.Endpoint(), "", l.CAFile())
		if err != nil {
			return err
		}
		c.HTTP.Timeout = 2 * time.Second
		return c.Do(ctx, http.MethodGet, "/v1/openapi.json", nil, nil)
	}
	sockets["coordinator"].expect(apiAnswers)
	sockets["h1"].expect(nil) // the first start has nothing to apply
	if err := l.Up(ctx); err != nil {
		t.Fatal(err)
	}
	waitCLI(t, l, 60*time.Second, "h1 up", AllAliveAndConverged(1))
	sockets["h1"].wait(t, 60*time.Second, "READY=1")

	// The agent down while a change is committed: its saved plan is behind.
	if err := l.StopAgent(1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	applyManifest(t, l, notifyManifest)
	var st api.ClusterStatus
	stratactl(t, l, &st, "status")
	committed := st.Epoch
	ns := l.EndpointNamespace(1, "sd", "p")
	sockets["h1"].expect(func() error {
		if !nsExists(ns) {
			return fmt.Errorf("endpoint namespace %s (committed at epoch %d) does not exist yet", ns, committed)
		}
		if len(dnsmasqs(l)) != 1 {
			return fmt.Errorf("the network's dnsmasq does not run yet")
		}
		return nil
	})
	start := time.Now()
	if err := l.StartAgent(1); err != nil {
		t.Fatal(err)
	}
	sockets["h1"].wait(t, 60*time.Second, "READY=1")
	time.Sleep(testenv.Scale(1500 * time.Millisecond)) // a watchdog ping or two
	if err := l.StopAgent(1, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	msgs := sockets["h1"].wait(t, 10*time.Second, "STOPPING=1")
	status := checkSequence(t, "agent", msgs, true, true)
	m := regexp.MustCompile(`^converged on epoch (\d+)$`).FindStringSubmatch(status)
	if m == nil {
		t.Fatalf("agent READY status %q, want \"converged on epoch N\"", status)
	}
	if n, _ := strconv.ParseUint(m[1], 10, 64); n < committed {
		t.Errorf("agent READY at epoch %d, before the epoch %d committed while it was down", n, committed)
	}
	for _, msg := range msgs {
		if strings.Contains(msg.text, "READY=1") {
			t.Logf("agent: READY=1 %s after start (%q); epoch %d was committed while it was down", msg.at.Sub(start).Round(time.Millisecond), status, committed)
		}
	}

	if err := l.StopCoordinator(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	msgs = sockets["coordinator"].wait(t, 10*time.Second, "STOPPING=1")
	status = checkSequence(t, "coordinator", msgs, false, true)
	if !strings.HasPrefix(status, "serving at epoch ") {
		t.Errorf("coordinator READY status %q, want \"serving at epoch N\"", status)
	}
}
