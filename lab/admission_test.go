package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/gossip"
)

type fixedMeta []byte

func (f fixedMeta) NodeMeta(int) []byte           { return f }
func (fixedMeta) NotifyMsg([]byte)                {}
func (fixedMeta) GetBroadcasts(int, int) [][]byte { return nil }
func (fixedMeta) LocalState(bool) []byte          { return nil }
func (fixedMeta) MergeRemoteState([]byte, bool)   {}

// TestGossipRejectsImpostor: a member without the key, and a member with
// the key that claims a registered host's name (h2, which left gracefully)
// from another address with a VTEP and 4,096 vCPUs of its choosing, are
// refused by the coordinator and by h1; nothing is placed on them, no
// tunnel entry points at them, and the real h2 gets its name back.
func TestGossipRejectsImpostor(t *testing.T) {
	l := upLab(t, 2, 100)
	ctx := context.Background()
	c, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	put := func(path, body string) error {
		return c.Do(ctx, http.MethodPut, path, rawJSON(body), nil)
	}
	for _, r := range [][2]string{
		{"/v1/flavors/small", `{"spec":{"vcpus":1,"ram_mib":128,"disk_gib":1}}`},
		{"/v1/images/tiny", `{"spec":{"format":"qcow2","path":"/var/lib/strata/images/tiny.qcow2"}}`},
		{"/v1/projects/p", `{}`},
		{"/v1/projects/p/networks/net", `{"spec":{"dhcp_host":"h1"}}`},
		{"/v1/projects/p/subnets/sub", `{"spec":{"network":"net","cidr":"10.9.1.0/24"}}`},
	} {
		if err := put(r[0], r[1]); err != nil {
			t.Fatalf("PUT %s: %v", r[0], err)
		}
	}
	impostorVTEP := l.nth(99)
	big := gossip.Meta{Role: gossip.RoleAgent, Zone: "lab", VTEP: impostorVTEP, VCPUs: 4096, RAMMiB: 1 << 22, DiskGiB: 1 << 16}
	join := []string{l.BridgeAddr().String() + ":7946"}

	// A member without the key cannot even join.
	mc := memberlist.DefaultLocalConfig()
	mc.Name, mc.BindAddr, mc.BindPort, mc.AdvertisePort = "h9", l.BridgeAddr().String(), 7950, 7950
	mc.Logger = log.New(io.Discard, "", 0)
	buf, _ := big.Encode()
	mc.Delegate = fixedMeta(buf)
	keyless, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	defer keyless.Shutdown()
	if n, err := keyless.Join(join); err == nil {
		t.Fatalf("a keyless member joined the pool (%d contacted)", n)
	}

	// h2 leaves gracefully (as every agent restart does); a keyed
	// impostor takes its name from the bridge address.
	if err := l.StopAgent(2, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// A SIGTERMed agent's leave message can lose the race with failure
	// detection, so SWIM may call it dead instead: either way the name is
	// free for the impostor to claim.
	waitCLI(t, l, 30*time.Second, "h2 left or dead", func(st api.ClusterStatus) bool {
		return hostState("h2", api.StateLeft)(st) || hostState("h2", api.StateDead)(st)
	})
	key, err := gossip.LoadKeyFile(filepath.Join(l.Dir, "gossip.key"))
	if err != nil {
		t.Fatal(err)
	}
	imp, err := gossip.New(gossip.Config{Name: "h2", BindAddr: l.BridgeAddr().String(), BindPort: 7951,
		Key: key, Profile: gossip.ProfileLocal, Meta: big})
	if err != nil {
		t.Fatal(err)
	}
	defer imp.Shutdown()
	if _, err := imp.Join(join); err != nil {
		t.Fatalf("keyed impostor join: %v", err)
	}
	// The event: both the coordinator and h1 heard it and refused it.
	for _, who := range []string{"coordinator", "h1"} {
		waitLog(t, l, who, 30*time.Second, `"refused gossip member"`, `"member":"h2"`)
	}

	var h api.Host
	if err := c.Do(ctx, http.MethodGet, "/v1/hosts/h2", nil, &h); err != nil {
		t.Fatal(err)
	}
	if h.State == api.StateAlive || strings.HasPrefix(h.Addr, l.BridgeAddr().String()+":") || h.VTEP == impostorVTEP.String() {
		t.Fatalf("the coordinator took the impostor for h2: %+v", h)
	}
	// Placement: the lab's hosts run no compute, so only the impostor's
	// 4,096 vCPUs could take an instance.
	err = put("/v1/projects/p/instances/vm", `{"spec":{"flavor":"small","image":"tiny","networks":["net"],"user_data":"#cloud-config\n"}}`)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code/100 != 4 || strings.Contains(ae.Message, `"h2"`) {
		t.Fatalf("instance create with only the impostor offering room: %v, want a 4xx naming no impostor", err)
	}
	// Tunnels: h1 never meshed with the impostor's VTEP.
	b, _ := os.ReadFile(l.logFile("h1"))
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "tunnel mesh") && strings.Contains(line, impostorVTEP.String()) {
			t.Fatalf("h1 meshed with the impostor: %s", line)
		}
	}
	out, err := exec.Command("ip", "netns", "exec", l.Namespace(1), "bridge", "fdb", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("bridge fdb show: %v %s", err, out)
	}
	if strings.Contains(string(out), "dst "+impostorVTEP.String()) {
		t.Fatalf("h1 has a tunnel entry to the impostor:\n%s", out)
	}

	// The real h2 comes back under its name.
	imp.Shutdown()
	if err := l.StartAgent(2); err != nil {
		t.Fatal(err)
	}
	waitCLI(t, l, 60*time.Second, "h2 back", AllAliveAndConverged(2))
	if err := c.Do(ctx, http.MethodGet, "/v1/hosts/h2", nil, &h); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h.Addr, l.HostAddr(2).String()+":") || h.VTEP != l.HostAddr(2).String() {
		t.Fatalf("h2 after its return: %+v", h)
	}
	t.Logf("keyless member refused at join; impostor h2 at %s (VTEP %s, 4096 vCPUs) refused by the coordinator and h1; real h2 back at %s", l.BridgeAddr(), impostorVTEP, h.Addr)

	// Rotate the key under the running pool: it keeps gossiping, a member
	// with the old key is out, and an agent restarted with only the old
	// key file comes back on the keyring its saved plan holds.
	var rot api.GossipRotateResult
	start := time.Now()
	stratactl(t, l, &rot, "gossip", "rotate-key", "--timeout", "60s")
	t.Logf("gossip key rotated to %s at epoch %d in %s", rot.Primary, rot.Epoch, time.Since(start).Round(time.Millisecond))
	stale, err := gossip.New(gossip.Config{Name: "h8", BindAddr: l.BridgeAddr().String(), BindPort: 7952,
		Key: key, Profile: gossip.ProfileLocal, Meta: gossip.Meta{Role: gossip.RoleCoordinator}})
	if err != nil {
		t.Fatal(err)
	}
	defer stale.Shutdown()
	if _, err := stale.Join(join); err == nil {
		t.Fatal("a member with the old key joined after rotation")
	}
	if err := l.StopAgent(1, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitCLI(t, l, 30*time.Second, "h1 left", hostState("h1", api.StateLeft))
	if err := l.StartAgent(1); err != nil {
		t.Fatal(err)
	}
	createProjects(t, l, "rotated", 1)
	waitCLI(t, l, 60*time.Second, "both hosts alive and converged on the new key", AllAliveAndConverged(2))
}

type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }

// waitLog waits until who's log has a line holding every part.
func waitLog(t *testing.T, l *Lab, who string, limit time.Duration, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(l.logFile(who))
		for _, line := range strings.Split(string(b), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s's log has no line with %s within %s", who, fmt.Sprint(parts), limit)
}
