package guesttest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/strata-infra/strata/internal/cephtest"
	"github.com/strata-infra/strata/internal/kerneltest"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/storagespec"
)

func TestMain(m *testing.M) {
	if kerneltest.InGuest() {
		os.Exit(m.Run())
	}
	cephtest.Main(m, "s14v", "rbd")
}

const pkg = "github.com/strata-infra/strata/agent/storage/cachedvol/guesttest"

// guestRig is what a guest run of this package needs from the host: the
// cluster, the images, the control server and the cache file.
type guestRig struct {
	c      *cephtest.Cluster
	images map[string]string // test name -> image
	// project is the project of the plan TestGuestSnapshotOfAttachedVolume
	// builds: its image is named as the storage controller names a volume's.
	project string
	ctl     string // control server, as the guest reaches it
	fast    string // the crash test's cache device, a file here
	pv      string // the volume group's physical volume, a file here
	h       *kerneltest.Harness
}

func newGuestRig(t testing.TB, names ...string) *guestRig {
	t.Helper()
	if kerneltest.InGuest() {
		t.Skip("runs on the host")
	}
	testenv.RequireRoot(t, "runs a Ceph cluster and a kernel-test guest")
	c := cephtest.Require(t)
	wd, _ := os.Getwd()
	h, err := kerneltest.New(wd)
	if err != nil {
		if errors.Is(err, kerneltest.ErrUnavailable) {
			testenv.Missing(t, "kernel test guest", err.Error())
		}
		t.Fatal(err)
	}
	h.Logf = t.Logf
	r := &guestRig{c: c, images: map[string]string{}, h: h, project: testenv.Tag('p')}
	ctx := t.Context()
	for _, n := range names {
		img := fmt.Sprintf("%s-%s", testenv.Tag('v'), n)
		if n == attachedVolume {
			img = storagespec.VolumeImage(r.project, n)
		}
		// krbd maps images with these features (object-map and the rest
		// would need a newer kernel client's support checked).
		if out, err := c.RBD(ctx, "create", "rbd/"+img, "--size", "128M", "--image-feature", "layering,exclusive-lock"); err != nil {
			t.Fatalf("rbd create %s: %v: %s", img, err, out)
		}
		r.images[n] = img
		t.Cleanup(func() {
			ctx := context.Background()
			if n == attachedVolume {
				c.RBD(ctx, "snap", "unprotect", "rbd/"+img+"@"+storagespec.SnapshotName(r.project, attachedSnap))
			}
			c.RBD(ctx, "snap", "purge", "rbd/"+img)
			if out, err := c.RBD(ctx, "rm", "rbd/"+img); err != nil {
				t.Logf("rbd rm %s: %v: %s", img, err, out)
			}
		})
	}
	r.ctl = r.serveControl(t)
	r.fast = filepath.Join(t.TempDir(), "fast.img")
	r.pv = filepath.Join(t.TempDir(), "pv.img")
	for _, f := range []struct {
		path string
		size int64
	}{{r.fast, 2 * cacheBytes}, {r.pv, 64 << 20}} {
		if err := os.WriteFile(f.path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(f.path, f.size); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// serveControl serves the guest's requests for what the storage controller
// does on a host with librbd: snapshots. It listens on loopback, which the
// guest reaches at 10.0.2.2.
func (r *guestRig) serveControl(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /snap", func(w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		img, snap := q.Get("image"), q.Get("snap")
		start := time.Now()
		out, err := r.c.RBD(req.Context(), "snap", "create", "rbd/"+img+"@"+snap)
		if err == nil && q.Get("protect") == "1" {
			out, err = r.c.RBD(req.Context(), "snap", "protect", "rbd/"+img+"@"+snap)
		}
		if err != nil {
			http.Error(w, fmt.Sprintf("%v: %s", err, out), http.StatusInternalServerError)
			return
		}
		t.Logf("host: snapshot rbd/%s@%s in %s", img, snap, time.Since(start).Round(time.Millisecond))
	})
	// The image's snapshots, as "rbd snap ls" gives them.
	mux.HandleFunc("GET /snaps", func(w http.ResponseWriter, req *http.Request) {
		out, err := r.c.RBD(req.Context(), "snap", "ls", "--format", "json", "rbd/"+req.URL.Query().Get("image"))
		if err != nil {
			http.Error(w, fmt.Sprintf("%v: %s", err, out), http.StatusInternalServerError)
			return
		}
		w.Write(out)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return fmt.Sprintf("10.0.2.2:%d", l.Addr().(*net.TCPAddr).Port)
}

func (r *guestRig) env(t testing.TB) map[string]string {
	key, err := keyOf(r.c.AdminKeyring())
	if err != nil {
		t.Fatal(err)
	}
	var imgs []string
	for n, i := range r.images {
		imgs = append(imgs, n+"="+i)
	}
	return map[string]string{
		envMon:     fmt.Sprintf("%s:%d", r.c.Addr.Addr(), cephtest.MonPort+1),
		envUser:    "admin",
		envKey:     key,
		envPool:    "rbd",
		envImages:  strings.Join(imgs, ","),
		envCtl:     r.ctl,
		envProject: r.project,
	}
}

func (r *guestRig) opts(t testing.TB, env map[string]string) kerneltest.Options {
	e := r.env(t)
	for k, v := range env {
		e[k] = v
	}
	return kerneltest.Options{
		// /dev/vda is the crash test's cache, /dev/vdb the volume group's
		// disk; lvm comes along for the volume group test.
		Env: e, Drives: []string{r.fast, r.pv}, Tools: []string{"lvm"},
		// dm-flakey: the agent's write refusal of a partly failing cache.
		Modules: []string{"dm-flakey"},
		// Five tests write 24 MiB each to Ceph from a TCG guest and flush
		// it, and the attached-volume snapshot writes 16 MiB under it
		// (the first boot takes 5 min on an idle machine, over 15 with the
		// load average at 60): a bound for a hung guest, not a
		// performance target.
		Timeout: testenv.Scale(25 * time.Minute), MemoryMB: 1024,
	}
}

func keyOf(keyring string) (string, error) {
	b, err := os.ReadFile(keyring)
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.TrimSpace(k) == "key" {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no key in %s", keyring)
}

// exportImage reads the raw image of name on the host.
func (r *guestRig) exportImage(t *testing.T, name string) []byte {
	t.Helper()
	img := r.images[name]
	out := filepath.Join(t.TempDir(), name+".raw")
	if b, err := r.c.RBD(context.Background(), "export", "rbd/"+img, out); err != nil {
		t.Fatalf("rbd export %s: %v: %s", img, err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// checkImage reads the first len(want) bytes of the raw image on the host.
func (r *guestRig) checkImage(t *testing.T, name string, want []byte) {
	t.Helper()
	img := r.images[name]
	got := r.exportImage(t, name)
	if len(got) < len(want) || !bytes.Equal(got[:len(want)], want) {
		t.Errorf("image %s (%s) read on the host differs from what the guest wrote through the cache", img, name)
	} else {
		t.Logf("image %s (%s): the %d MiB written through the cache are all in the raw image", img, name, len(want)>>20)
	}
}

// TestCachedVolumesInGuest boots the kernel-test guest twice for all of
// this package's guest tests. The first boot runs TestGuestInstanceDisk,
// TestGuestCachedVolumeNothingLost, TestGuestSnapshotOfCachedVolume,
// TestGuestSnapshotOfAttachedVolume, TestGuestReleaseFlushesFirst, the
// failing-device tests and the write half of TestGuestCacheSurvivesCrash,
// which crashes that guest; the
// second boot runs the recover half over the same cache file and image.
// The host then reads the raw images back.
func TestCachedVolumesInGuest(t *testing.T) {
	r := newGuestRig(t, "nl", "kill", "snap", attachedVolume, "pwt", "pwb", "wt", "wt2", "wbf", "disk", "diskn", "lvm", "idle", releasedVolume, drainedVolume, "crash")
	ctx := t.Context()
	run := "^(TestGuestIdleCleaning|TestGuestInstanceDisk|TestGuestVolumeGroupCache|TestGuestCachedVolumeNothingLost|TestGuestSnapshotOfCachedVolume|TestGuestSnapshotOfAttachedVolume|TestGuestReleaseFlushesFirst|TestGuestDrainBeforeUnplug|TestGuestFailingCacheDevice|TestGuestPartlyFailingCacheDevice|TestGuestCacheSurvivesCrash)$"
	res, err := r.h.RunPackage(ctx, pkg, run, r.opts(t, map[string]string{envPhase: "write"}))
	if res == nil {
		t.Fatal(err)
	}
	// The first guest ends in a crash, so it reports no exit code.
	if !errors.Is(err, kerneltest.ErrNoExitCode) || !strings.Contains(res.Output, crashPoint) {
		t.Fatalf("first guest: want the crash point and no exit code, got %v\n%s", err, kerneltest.FailureMessage(r.h, pkg, run, res, err))
	}
	t.Logf("first guest (%s):\n%s", res.Total.Round(time.Millisecond), res.Output)
	for _, test := range []string{"TestGuestIdleCleaning", "TestGuestInstanceDisk", "TestGuestVolumeGroupCache", "TestGuestCachedVolumeNothingLost", "TestGuestSnapshotOfCachedVolume", "TestGuestSnapshotOfAttachedVolume", "TestGuestReleaseFlushesFirst", "TestGuestDrainBeforeUnplug", "TestGuestFailingCacheDevice", "TestGuestPartlyFailingCacheDevice"} {
		if !strings.Contains(res.Output, "--- PASS: "+test+" ") {
			t.Errorf("first guest: %s did not pass", test)
		}
	}
	if strings.Contains(res.Output, "--- FAIL") {
		t.Errorf("first guest: a test failed")
	}
	r.checkImage(t, "nl", Pattern(1, dataBytes))
	r.checkImage(t, "kill", Pattern(2, dataBytes))
	r.checkImage(t, "disk", Pattern(20, diskBytes))
	r.checkImage(t, "diskn", Pattern(21, diskBytes))
	r.checkImage(t, "lvm", Pattern(30, lvmBytes))
	r.checkImage(t, "idle", idleImage())
	r.checkImage(t, "wt2", Pattern(8, 8<<20))
	r.checkImage(t, "pwt", Pattern(51, 8<<20))
	r.checkImage(t, releasedVolume, Pattern(40, dataBytes))
	r.checkImage(t, drainedVolume, Pattern(42, dataBytes))
	// The failed writeback caches' 4 MiB each are at risk because they
	// exist only in the cache: none of it reached the image.
	for _, name := range []string{"wbf", "pwb"} {
		if got := r.exportImage(t, name); len(got) < 4<<20 || !bytes.Equal(got[:4<<20], make([]byte, 4<<20)) {
			t.Errorf("image %s: the dirty data a failed writeback cache holds was written back after all", name)
		} else {
			t.Logf("image %s: none of the 4 MiB at risk is in the image", name)
		}
	}

	m := regexp.MustCompile(recordPrefix + `(\S+)`).FindStringSubmatch(res.Output)
	if m == nil {
		t.Fatal("first guest printed no record for the crash test")
	}
	run = "^TestGuestCacheSurvivesCrash$"
	res, err = r.h.RunPackage(ctx, pkg, run, r.opts(t, map[string]string{envPhase: "recover", envRecord: m[1]}))
	if err != nil {
		t.Fatal(kerneltest.FailureMessage(r.h, pkg, run, res, err))
	}
	t.Logf("second guest (%s):\n%s", res.Total.Round(time.Millisecond), res.Output)
	if !strings.Contains(res.Output, "--- PASS: TestGuestCacheSurvivesCrash ") {
		t.Errorf("second guest: TestGuestCacheSurvivesCrash did not pass")
	}
	r.checkImage(t, "crash", Pattern(3, dataBytes))
}
