package rbd_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/rbd"
)

// TestClaimFencesOnlyDeadWriters: a volume written by a client on
// "another host" (an `rbd bench` process holding the image's exclusive
// lock) is refused to a new host while that client lives, and still while
// Ceph has not noticed its death (its watch remains); once the watch has
// timed out, the claim blocklists the dead owner's address and breaks its
// lock, and the next claim has nothing left to break.
func TestClaimFencesOnlyDeadWriters(t *testing.T) {
	c, cl := connect(t)
	vol := rbd.Ref{Pool: "volumes", Image: name("claim")}
	if err := c.Create(vol, 256*mib, "test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove(vol, "", false) })

	// The other host's writer: writes until killed.
	bench := exec.Command("rbd", "-c", cl.Conf, "bench", "--io-type", "write", "--io-size", "4096",
		"--io-threads", "1", "--io-total", "100G", "--io-pattern", "rand", vol.String())
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bench.Process.Kill(); bench.Wait() })
	var owner string
	testenv.WaitTrue(t, 60*time.Second, "the writer to take the exclusive lock", func() bool {
		st, err := c.Status(vol)
		// Not this connection's own: making the image took the lock a moment.
		if err == nil && len(st.LockOwners) == 1 && st.LockOwners[0] != c.Addr() {
			owner = st.LockOwners[0]
		}
		return owner != ""
	})
	if _, err := c.Claim(vol); !errors.Is(err, rbd.ErrInUse) {
		t.Fatalf("claim while the writer lives: %v, want ErrInUse", err)
	}
	if st := mustStatus(t, c, vol); len(st.LockOwners) != 1 || st.LockOwners[0] != owner {
		t.Fatalf("the refused claim changed the lock: %v, want %s", st.LockOwners, owner)
	}

	// The writer dies without letting go.
	bench.Process.Signal(syscall.SIGKILL)
	bench.Wait()
	if _, err := c.Claim(vol); !errors.Is(err, rbd.ErrInUse) {
		t.Fatalf("claim right after the writer died (its watch still there): %v, want ErrInUse", err)
	}
	start := time.Now()
	var broke []string
	testenv.WaitFor(t, 120*time.Second, "Ceph to time the dead writer's watch out and the claim to succeed", func() error {
		var err error
		broke, err = c.Claim(vol)
		return err
	})
	t.Logf("claim succeeded %.1fs after the writer died; broke %v", time.Since(start).Seconds(), broke)
	if len(broke) != 1 || broke[0] != owner {
		t.Fatalf("broke %v, want the dead owner %s", broke, owner)
	}
	out, err := cl.Ceph(context.Background(), "osd", "blocklist", "ls")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), owner) {
		t.Fatalf("the dead owner %s is not blocklisted:\n%s", owner, out)
	}
	for _, o := range mustStatus(t, c, vol).LockOwners {
		if o != c.Addr() {
			t.Fatalf("lock owner %s after the claim (this connection is %s)", o, c.Addr())
		}
	}
	if broke, err := c.Claim(vol); err != nil || len(broke) != 0 {
		t.Fatalf("second claim: broke %v, %v; want nothing to do", broke, err)
	}
}
