package lab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/netnsutil"
)

const backupManifest = `
kind: project
name: bk
---
kind: network
project: bk
name: net
---
kind: subnet
project: bk
name: sub
spec: {network: net, cidr: 10.71.0.0/24}
---
kind: port
project: bk
name: before
spec: {network: net, host: h1, owner: endpoint}
`

const afterBackup = `
kind: port
project: bk
name: after
spec: {network: net, host: h2, owner: endpoint}
`

// TestBackupRestore runs the real commands against a running lab: an
// online backup, a change after it, then the backup file started as the
// store by mistake (agents ahead of it refuse it and keep their state),
// then `strata-coordinator restore` (agents take the restored plan at an
// epoch past their own and the change after the backup is undone).
func TestBackupRestore(t *testing.T) {
	l := upLab(t, 2, 10000, backupManifest)
	ctx := context.Background()
	dataDir := filepath.Join(l.Dir, "coordinator")
	backup := filepath.Join(t.TempDir(), "backup.db")
	coord := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(l.bin("strata-coordinator"), append(args, "--config=", "--data-dir", dataDir, "--api-url", l.Endpoint())...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("strata-coordinator %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// The coordinator runs and holds its file: the backup goes over the API.
	t.Log(coord("backup", "--out", backup))
	applyManifest(t, l, afterBackup)
	st, _ := waitCLI(t, l, 60*time.Second, "after the backup", AllAliveAndConverged(2))
	aheadEpoch := st.Epoch
	afterNS := l.EndpointNamespace(2, "bk", "after")
	beforeNS := l.EndpointNamespace(1, "bk", "before")
	if !nsPresent(t, afterNS) {
		t.Fatalf("%s missing before the restore", afterNS)
	}

	// The backup started as the store by mistake: same history, behind the hosts.
	if err := l.StopCoordinator(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "strata.db"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.StartCoordinator(ctx); err != nil {
		t.Fatal(err)
	}
	refused := func() bool {
		logb, _ := os.ReadFile(l.logFile("coordinator"))
		return strings.Count(string(logb), "store is older than a host's plan") >= 2
	}
	deadline := time.Now().Add(60 * time.Second)
	for !refused() && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if !refused() {
		t.Fatal("the older copy was not refused to the hosts ahead of it")
	}
	// Once gossip has the hosts back, status shows them ahead and not converged.
	st, _ = waitCLI(t, l, 30*time.Second, "hosts back in gossip", func(s api.ClusterStatus) bool {
		return len(s.Hosts) == 2 && s.Hosts[0].State == api.StateAlive && s.Hosts[1].State == api.StateAlive
	})
	if st.Converged || st.Epoch >= aheadEpoch || !nsPresent(t, afterNS) {
		t.Fatalf("older copy: status %+v, %s present %v; want not converged and the host state kept", st, afterNS, nsPresent(t, afterNS))
	}
	t.Logf("older copy at epoch %d refused by hosts at epoch %d; their state kept", st.Epoch, aheadEpoch)

	// Restored on purpose.
	if err := l.StopCoordinator(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	t.Log(coord("restore", "--from", backup))
	if err := l.StartCoordinator(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	st, _ = waitCLI(t, l, 60*time.Second, "converged on the restored store", func(s api.ClusterStatus) bool {
		return AllAliveAndConverged(2)(s) && !nsPresent(t, afterNS)
	})
	if st.Epoch <= aheadEpoch || !nsPresent(t, beforeNS) {
		t.Fatalf("after the restore: epoch %d (hosts were at %d), %s present %v", st.Epoch, aheadEpoch, beforeNS, nsPresent(t, beforeNS))
	}
	var ports []api.Resource
	stratactl(t, l, &ports, "ports", "list", "-p", "bk")
	for _, p := range ports {
		if p.Name == "after" {
			t.Fatal("port after is still in the restored store")
		}
	}
	t.Logf("restored: fleet converged on epoch %d (past the hosts' %d) %s after the start; the port made after the backup is gone",
		st.Epoch, aheadEpoch, time.Since(start).Round(time.Millisecond))
}

func nsPresent(t testing.TB, name string) bool {
	t.Helper()
	names, err := netnsutil.List(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}
