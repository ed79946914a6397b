package attach_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/strata-infra/strata/agent/compute"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/computespec"
	"github.com/strata-infra/strata/pkg/rbd"
)

// TestInstanceOnRBD drives the agent's compute driver, with this package
// as its volume door, against a private libvirtd and the real cluster: a
// TCG guest boots from a copy-on-write RBD clone of its imported image
// (a librbd network disk whose cephx key lives in a libvirt secret); a
// volume is hot-plugged, the guest sees it and writes a record to it; an
// online extend reaches the guest; the volume is hot-unplugged (qemu lets
// go of it in Ceph) and plugged again, and the guest reads the record
// back; after a stop and start the volume is still there with the record.
func TestInstanceOnRBD(t *testing.T) {
	cl, keyring, conn := cephUser(t, "strata")
	ctx := context.Background()
	tag := fmt.Sprintf("s13-%d", os.Getpid())
	data := rbd.Ref{Pool: "volumes", Image: tag + "-data"}
	if err := conn.Create(data, 64<<20, "test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Remove(data, "", false) })

	claims := 0
	g := newRBDGuest(t, cl, "strata", keyring, conn, tag, func(pool, image string) ([]string, error) {
		claims++
		return conn.Claim(rbd.Ref{Pool: pool, Image: image})
	}, nil)
	drv, in, console, root := g.drv, g.in, g.console, g.root
	set := func(what string) {
		t.Helper()
		for i := 0; i < 2; i++ { // the second call changes nothing
			if err := drv.Set(ctx, []compute.Instance{in}); err != nil {
				t.Fatalf("%s (call %d): %v", what, i+1, err)
			}
		}
	}
	count := func(re *regexp.Regexp) int {
		b, _ := os.ReadFile(console)
		return len(re.FindAllString(string(b), -1))
	}
	waitFor := func(what string, re *regexp.Regexp, n int) {
		t.Helper()
		testenv.WaitTrue(t, 240*time.Second, what, func() bool { return count(re) >= n })
	}
	watched := func(r rbd.Ref) bool {
		st, err := conn.Status(r)
		return err == nil && len(st.Watchers) > 0
	}

	set("boot from the root clone")
	// The initramfs mounts the root filesystem from the clone through
	// qemu's rbd driver and switches to it; its init lists vda at the
	// clone's size (48 MiB = 98304 sectors).
	waitFor("the guest to boot from its RBD clone", regexp.MustCompile(`strata-guest: disk vda 98304 sectors`), 1)
	if !watched(root) {
		t.Fatal("qemu does not have the root clone open")
	}

	in.Spec.Volumes = []computespec.Volume{{Pool: data.Pool, Image: data.Image, Serial: "data", SizeBytes: 64 << 20}}
	set("attach the data volume")
	wrote := regexp.MustCompile(`strata-guest: volume vdb wrote (strata-record \S+)`)
	waitFor("the guest to see vdb and write its record", wrote, 1)
	b, _ := os.ReadFile(console)
	record := wrote.FindStringSubmatch(string(b))[1]
	t.Logf("the guest wrote %q to the volume", record)

	// Online extend: the controller grows the image; the host tells qemu,
	// and the guest sees 128 MiB (262144 sectors).
	if err := conn.Resize(data, 128<<20); err != nil {
		t.Fatal(err)
	}
	in.Spec.Volumes[0].SizeBytes = 128 << 20
	set("tell the guest the volume grew")
	waitFor("the guest to see vdb at 128 MiB", regexp.MustCompile(`strata-guest: disk vdb 262144 sectors`), 1)

	holds := regexp.MustCompile(`strata-guest: volume vdb holds ` + regexp.QuoteMeta(record) + `\b`)
	vols := in.Spec.Volumes
	in.Spec.Volumes = nil
	set("detach the volume")
	testenv.WaitTrue(t, 60*time.Second, "qemu to let go of the volume", func() bool { return !watched(data) })
	waitFor("the guest to see vdb go", regexp.MustCompile(`strata-guest: disk vdb gone`), 1)
	in.Spec.Volumes = vols
	set("attach the volume again")
	waitFor("the guest to read its record back", holds, 1)

	in.Spec.Power = computespec.PowerStopped
	set("stop the instance")
	testenv.WaitTrue(t, 60*time.Second, "qemu to close root and volume", func() bool { return !watched(data) && !watched(root) })
	in.Spec.Power = computespec.PowerRunning
	set("start the instance")
	waitFor("the volume to be there after a stop and start, with the record", holds, 2)
	if count(wrote) != 1 {
		t.Fatalf("the guest wrote %d records, want 1: the volume lost its data", count(wrote))
	}
	if claims < 3 {
		t.Fatalf("%d claims, want one per open (root at each start, the volume at each attach)", claims)
	}

	if err := drv.Set(ctx, nil); err != nil {
		t.Fatal(err)
	}
	testenv.WaitTrue(t, 60*time.Second, "the deleted instance's qemu to let go", func() bool { return !watched(data) && !watched(root) })
}
