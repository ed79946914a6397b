package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/plan"
	"github.com/strata-infra/strata/pkg/rbd"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// helperEnv makes the test binary a storage controller process (a stand-in
// for strata-agent with only the storage subsystem) reading its plan from
// the file the variable names.
const helperEnv = "S13_STORAGE_CONTROLLER_PLAN"

type helperConfig struct {
	RBD  rbd.Config    `json:"rbd"`
	Pool string        `json:"pool"`
	Host string        `json:"host"`
	TTL  time.Duration `json:"ttl"`
}

// helperMain runs a controller on the plan file until killed.
func helperMain() int {
	var hc helperConfig
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv+"_CONFIG")), &hc); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c, err := New(Config{Host: hc.Host, LeasePool: hc.Pool, LeaseTTL: hc.TTL, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Connect: func() (Pool, error) {
			conn, err := rbd.Connect(hc.RBD)
			if err != nil {
				return nil, err
			}
			return conn, nil
		}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	go c.Renew(ctx)
	for {
		if s, err := readPlan(os.Getenv(helperEnv)); err == nil {
			if err := c.Reconcile(ctx, s); err != nil {
				fmt.Fprintln(os.Stderr, "reconcile:", err)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readPlan(path string) (*plan.Snapshot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s plan.Snapshot
	return &s, json.Unmarshal(b, &s)
}

func writePlan(t *testing.T, path string, s *plan.Snapshot) {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// TestStorageControllerFailover: the active controller's process is
// SIGKILLed during a burst of volume creates; the standby takes over once
// the lease expires; every volume the plan acknowledged exists exactly once
// and no orphan image is left in the pool.
func TestStorageControllerFailover(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ttl := 3 * time.Second
	dir := t.TempDir()
	planFile := filepath.Join(dir, "plan.json")
	base := []res{{"volumetype", "", "default", map[string]string{"pool": f.pool}}}
	const total, killAt = 24, 8
	epoch := uint64(1)
	var rs []res
	writePlan(t, planFile, planOf(t, epoch, base...))

	hc, _ := json.Marshal(helperConfig{RBD: f.cfg, Pool: f.pool, Host: "h1", TTL: ttl})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+planFile, helperEnv+"_CONFIG="+string(hc))
	logf, _ := os.Create(filepath.Join(dir, "h1.log"))
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })

	// Wait until h1 is active (it made the lease object).
	waitFor(t, 60*time.Second, "h1 to take the lease", func() bool {
		h, err := f.conn.Holder(f.pool, LeaseObject)
		return err == nil && h.Cookie == "h1"
	})

	b := f.controller(t, "h2", ttl)
	var killed time.Time
	for i := 0; i < total; i++ {
		epoch++
		rs = append(rs, res{"volume", "p", fmt.Sprintf("v%d", i), map[string]any{"size_gib": 1}})
		writePlan(t, planFile, planOf(t, epoch, append(append([]res{}, base...), rs...)...))
		if i == killAt {
			// Mid-burst: h1 is working through the volumes written so far.
			cmd.Process.Signal(syscall.SIGKILL)
			<-exited
			killed = time.Now()
			made, _ := f.conn.List(f.pool)
			t.Logf("h1 SIGKILLed with %d images made of the %d volumes acknowledged so far", len(made), i+1)
		}
		if i >= killAt {
			// h2, the standby, keeps trying meanwhile, as its agent would.
			s, _ := readPlan(planFile)
			if err := b.Reconcile(ctx, s); err != nil {
				t.Logf("h2 pass at epoch %d: %v", s.Epoch, err)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s, _ := readPlan(planFile)
	waitFor(t, ttl+60*time.Second, "h2 to converge the plan", func() bool {
		return b.Reconcile(ctx, s) == nil && b.Active()
	})
	t.Logf("h2 converged %.1fs after h1 was killed (lease TTL %s)", time.Since(killed).Seconds(), ttl)

	names, err := f.conn.List(f.pool)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 0; i < total; i++ {
		want = append(want, storagespec.VolumeImage("p", fmt.Sprintf("v%d", i)))
	}
	slices.Sort(want)
	slices.Sort(names)
	if !slices.Equal(names, want) {
		t.Fatalf("pool holds %d images %v\nwant the %d acknowledged volumes exactly: %v", len(names), names, len(want), want)
	}
	for i := 0; i < total; i++ {
		st := f.status(t, "p", fmt.Sprintf("v%d", i))
		if st.Owner != storagespec.Owner("volume", "p", fmt.Sprintf("v%d", i)) || st.Size != storagespec.GiB {
			t.Errorf("v%d: owner %q size %d", i, st.Owner, st.Size)
		}
	}
	if log, _ := os.ReadFile(filepath.Join(dir, "h1.log")); !strings.Contains(string(log), "storage controller active") {
		t.Errorf("h1 never became active:\n%s", log)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
