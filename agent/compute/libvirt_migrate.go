package compute

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket"
	"github.com/digitalocean/go-libvirt/socket/dialers"
)

// Migrator moves instances between hosts: this host's libvirtd and, through
// their libvirt URIs, the other hosts'.
type Migrator interface {
	// MigrateLive moves the running domain to peer's libvirtd, peer to
	// peer (this libvirtd drives it), persistent there and undefined here,
	// calling progress about once a second until it ends.
	MigrateLive(ctx context.Context, domain, peer string, progress func(Progress)) error
	// Export lets peers read the files of dir as libvirt pool pool (a
	// transient directory pool); again is fine.
	Export(ctx context.Context, pool, dir string) error
	// Unexport ends an Export; none is fine.
	Unexport(ctx context.Context, pool string) error
	// Fetch copies file name of peer's exported pool to path (sparse),
	// through a temporary file renamed into place at the end.
	Fetch(ctx context.Context, peer, pool, name, path string) error
}

// Progress is a running migration job's figures.
type Progress struct {
	Elapsed                                 time.Duration
	DataTotal, DataProcessed, DataRemaining uint64
}

func (p Progress) String() string {
	if p.DataTotal == 0 {
		return fmt.Sprintf("%.1fs: the destination is starting its qemu", p.Elapsed.Seconds())
	}
	pct := 0.0
	if p.DataTotal > 0 {
		pct = 100 * float64(p.DataProcessed) / float64(p.DataTotal)
	}
	return fmt.Sprintf("%.1fs: %d of %d MiB sent (%.0f%%), %d MiB left", p.Elapsed.Seconds(),
		p.DataProcessed>>20, p.DataTotal>>20, pct, p.DataRemaining>>20)
}

// PeerURIs says how this host reaches a peer's libvirtd: Control is the
// libvirt URI (qemu+tls://compute-07/system across machines,
// qemu+unix:///system?socket=PATH for libvirtds on one machine), Data,
// when set, the address qemu sends a live migration's memory to
// (tcp://10.0.0.7); without it the memory is tunnelled through the
// libvirtds' connection.
type PeerURIs func(peer string) (control, data string)

// LibvirtMigrator is the Migrator over go-libvirt.
type LibvirtMigrator struct {
	local *Libvirt
	peers PeerURIs
}

// NewLibvirtMigrator migrates through local and reaches peers by peers.
func NewLibvirtMigrator(local *Libvirt, peers PeerURIs) *LibvirtMigrator {
	return &LibvirtMigrator{local: local, peers: peers}
}

// MigrateLive implements Migrator. The memory converges under a busy guest
// (auto-converge throttles its vCPUs); ctx ending aborts the job, and the
// guest keeps running here.
func (m *LibvirtMigrator) MigrateLive(ctx context.Context, domain, peer string, progress func(Progress)) error {
	l, err := m.local.conn()
	if err != nil {
		return err
	}
	d, err := l.DomainLookupByName(domain)
	if err != nil {
		return fmt.Errorf("migrate domain %q: %w", domain, err)
	}
	control, data := m.peers(peer)
	var params []golibvirt.TypedParam
	if data != "" {
		params = append(params, golibvirt.TypedParam{Field: golibvirt.MigrateParamURI, Value: *golibvirt.NewTypedParamValueString(data)})
	}
	flags := golibvirt.MigrateLive | golibvirt.MigratePeer2peer | golibvirt.MigratePersistDest |
		golibvirt.MigrateUndefineSource | golibvirt.MigrateAutoConverge | golibvirt.MigrateAbortOnError
	if data == "" {
		// No address for qemu's own stream: the memory goes through the
		// libvirtds' connection (TLS across machines).
		flags |= golibvirt.MigrateTunnelled
	}
	done := make(chan error, 1)
	go func() {
		_, err := l.DomainMigratePerform3Params(d, golibvirt.OptString{control}, params, nil, flags)
		done <- err
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("migrate domain %q to %s (%s): %w", domain, peer, control, err)
			}
			return nil
		case <-ctx.Done():
			l.DomainAbortJob(d)
			<-done
			return fmt.Errorf("migrate domain %q to %s: %w", domain, peer, ctx.Err())
		case <-tick.C:
			typ, elapsed, _, total, processed, remaining, _, _, _, _, _, _, err := l.DomainGetJobInfo(d)
			if err == nil && typ != 0 && progress != nil {
				progress(Progress{Elapsed: time.Duration(elapsed) * time.Millisecond,
					DataTotal: total, DataProcessed: processed, DataRemaining: remaining})
			}
		}
	}
}

// Export implements Migrator.
func (m *LibvirtMigrator) Export(ctx context.Context, pool, dir string) error {
	l, err := m.local.conn()
	if err != nil {
		return err
	}
	if p, err := l.StoragePoolLookupByName(pool); err == nil {
		return l.StoragePoolRefresh(p, 0)
	}
	x := fmt.Sprintf("<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>", xmlEscape(pool), xmlEscape(dir))
	if _, err := l.StoragePoolCreateXML(x, golibvirt.StoragePoolCreateNormal); err != nil {
		return fmt.Errorf("export %q as pool %q: %w", dir, pool, err)
	}
	return nil
}

// Unexport implements Migrator.
func (m *LibvirtMigrator) Unexport(ctx context.Context, pool string) error {
	l, err := m.local.conn()
	if err != nil {
		return err
	}
	p, err := l.StoragePoolLookupByName(pool)
	if golibvirt.IsNotFound(err) || isCode(err, golibvirt.ErrNoStoragePool) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unexport pool %q: %w", pool, err)
	}
	if err := l.StoragePoolDestroy(p); err != nil && !golibvirt.IsNotFound(err) && !isCode(err, golibvirt.ErrNoStoragePool) {
		return fmt.Errorf("unexport pool %q: %w", pool, err)
	}
	return nil
}

// Fetch implements Migrator: the file streams from the peer's libvirtd
// (virStorageVolDownload), so a copy needs no channel between hosts but
// the one live migration uses.
func (m *LibvirtMigrator) Fetch(ctx context.Context, peer, pool, name, path string) error {
	control, _ := m.peers(peer)
	dialer, err := peerDialer(control)
	if err != nil {
		return err
	}
	l := golibvirt.NewWithDialer(dialer)
	if err := l.ConnectToURI(golibvirt.QEMUSystem); err != nil {
		return fmt.Errorf("connect to %s's libvirtd (%s): %w", peer, control, err)
	}
	defer l.Disconnect()
	p, err := l.StoragePoolLookupByName(pool)
	if err != nil {
		return fmt.Errorf("pool %q on %s: %w", pool, peer, err)
	}
	if err := l.StoragePoolRefresh(p, 0); err != nil {
		return fmt.Errorf("pool %q on %s: %w", pool, peer, err)
	}
	vol, err := l.StorageVolLookupByName(p, name)
	if err != nil {
		return fmt.Errorf("file %q of pool %q on %s: %w", name, pool, peer, err)
	}
	tmp := path + ".fetch"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	w := &sparseWriter{f: f}
	stop := context.AfterFunc(ctx, func() { l.Disconnect() })
	defer stop()
	if err := l.StorageVolDownload(vol, w, 0, 0, 0); err != nil {
		f.Close()
		return fmt.Errorf("copy %q of pool %q from %s: %w", name, pool, peer, err)
	}
	if err := w.finish(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// peerDialer dials the libvirtd of a libvirt URI: qemu+unix (its socket
// parameter), qemu+tls or qemu+tcp (default ports).
func peerDialer(uri string) (socket.Dialer, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("peer libvirt URI %q: %w", uri, err)
	}
	switch u.Scheme {
	case "qemu+unix":
		s := u.Query().Get("socket")
		if s == "" {
			s = "/run/libvirt/libvirt-sock"
		}
		return dialers.NewLocal(dialers.WithSocket(s), dialers.WithLocalTimeout(5*time.Second)), nil
	case "qemu+tls":
		return dialers.NewTLS(u.Hostname()), nil
	case "qemu+tcp":
		return dialers.NewRemote(u.Hostname(), dialers.WithRemoteTimeout(5*time.Second)), nil
	}
	return nil, fmt.Errorf("peer libvirt URI %q: scheme %q is not qemu+unix, qemu+tls or qemu+tcp", uri, u.Scheme)
}

// sparseWriter writes a stream to a file, seeking over blocks of zeros so
// that the copy of a sparse disk stays sparse.
type sparseWriter struct {
	f   *os.File
	off int64
}

var zeroBlock = make([]byte, 64<<10)

func (w *sparseWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), len(zeroBlock))
		if bytes.Equal(p[:k], zeroBlock[:k]) {
			w.off += int64(k)
		} else if _, err := w.f.WriteAt(p[:k], w.off); err != nil {
			return 0, err
		} else {
			w.off += int64(k)
		}
		p = p[k:]
	}
	return n, nil
}

// finish sets the file's length (trailing zeros were only skipped).
func (w *sparseWriter) finish() error { return w.f.Truncate(w.off) }

var _ io.Writer = (*sparseWriter)(nil)

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "'", "&apos;", `"`, "&quot;").Replace(s)
}
