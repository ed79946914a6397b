package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/apiclient"
	"github.com/strata-infra/strata/pkg/rbd"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// imageImportCmd is `stratactl images import NAME FILE`: the file (raw or
// qcow2, converted with qemu-img) goes into the images pool as RBD image
// image-NAME with the protected snapshot "base", straight from this
// machine to Ceph, then the image is registered with the coordinator. An
// image that fails to register is removed from the pool again.
func imageImportCmd(g *globals) *cobra.Command {
	var format, pool string
	var cc rbd.Config
	cmd := &cobra.Command{
		Use: "import NAME FILE", Short: "Import a raw or qcow2 file into Ceph as an image volumes and root disks clone", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, file := args[0], args[1]
			if fe := api.ValidateName("name", name); fe != nil {
				return fe
			}
			if fe := storagespec.ValidatePool("--pool", pool); fe != nil {
				return fe
			}
			abs, err := filepath.Abs(file)
			if err != nil {
				return err
			}
			// Refuse a bad file before anything is made anywhere.
			src, err := rbd.Inspect(cmd.Context(), abs, format)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var existing api.Resource
			if err := c.Do(cmd.Context(), http.MethodGet, apiclient.ResourcePath("images", "", name), nil, &existing); err == nil {
				return fmt.Errorf("image %q exists; delete it first or pick another name", name)
			}
			conn, err := rbd.Connect(cc)
			if err != nil {
				return err
			}
			defer conn.Close()
			ref := rbd.Ref{Pool: pool, Image: storagespec.ImageName(name)}
			owner := storagespec.Owner("image", "", name)
			p := newProgress(cmd.ErrOrStderr())
			start := time.Now()
			if _, err := conn.ImportFile(cmd.Context(), abs, src.Format, ref, owner, os.TempDir(), p.update); err != nil {
				return err
			}
			p.done()
			fmt.Fprintf(cmd.ErrOrStderr(), "imported %s (%s, %d bytes) into %s in %.1fs\n", file, src.Format, src.VirtualSize, ref, time.Since(start).Seconds())
			spec := api.ImageSpec{Format: "raw", Path: abs, Pool: pool, SizeBytes: src.VirtualSize}
			if err := putResource(cmd, g, "images", "", name, spec, true); err != nil {
				if rerr := conn.Remove(ref, owner, false); rerr != nil {
					return fmt.Errorf("%w (and removing %s again: %v)", err, ref, rerr)
				}
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "", "raw or qcow2 (default: detect)")
	f.StringVar(&pool, "pool", envOr("STRATA_IMAGES_POOL", "images"), "Ceph pool of the images (env STRATA_IMAGES_POOL)")
	f.StringVar(&cc.MonHost, "ceph-mon-host", os.Getenv("STRATA_CEPH_MON_HOST"), "Ceph monitors, mon host syntax (env STRATA_CEPH_MON_HOST)")
	f.StringVar(&cc.User, "ceph-user", envOr("STRATA_CEPH_USER", "strata"), "cephx id without \"client.\" (env STRATA_CEPH_USER)")
	f.StringVar(&cc.Keyring, "ceph-keyring", envOr("STRATA_CEPH_KEYRING", "/etc/ceph/ceph.client.strata.keyring"), "keyring of the cephx user (env STRATA_CEPH_KEYRING)")
	return cmd
}

// progress prints "bytes, rate, time left" on one line, on a terminal only.
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.tty = err == nil
	}
	return p
}

func (p *progress) update(done, total uint64) {
	if !p.tty || time.Since(p.last) < 200*time.Millisecond && done < total {
		return
	}
	p.last = time.Now()
	el := time.Since(p.start).Seconds()
	rate := float64(done) / max(el, 0.001)
	left := 0.0
	if rate > 0 {
		left = float64(total-done) / rate
	}
	fmt.Fprintf(p.w, "\r%6.1f / %.1f MiB  %6.1f MiB/s  %4.0fs left ", float64(done)/(1<<20), float64(total)/(1<<20), rate/(1<<20), left)
}

// line shows msg in place of the last progress line.
func (p *progress) line(msg string) {
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", msg)
	}
}

func (p *progress) done() {
	if p.tty {
		fmt.Fprintln(p.w)
	}
}
