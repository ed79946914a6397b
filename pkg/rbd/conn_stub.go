//go:build !pacific

package rbd

import (
	"context"
	"io"
	"time"
)

// Supported reports whether this build carries Ceph support.
const Supported = false

// Conn is a connection that never connects: this build has no Ceph support.
type Conn struct{}

// Connect reports ErrNoCeph: build with `-tags pacific` (make build does).
func Connect(cfg Config) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return nil, ErrNoCeph
}

func (c *Conn) Close()                                         {}
func (c *Conn) CheckPool(pool string) error                    { return ErrNoCeph }
func (c *Conn) List(pool string) ([]string, error)             { return nil, ErrNoCeph }
func (c *Conn) Create(r Ref, size uint64, owner string) error  { return ErrNoCeph }
func (c *Conn) Clone(parent, child Ref, owner string) error    { return ErrNoCeph }
func (c *Conn) Copy(src, dst Ref, owner string) error          { return ErrNoCeph }
func (c *Conn) Resize(r Ref, size uint64) error                { return ErrNoCeph }
func (c *Conn) Flatten(r Ref) error                            { return ErrNoCeph }
func (c *Conn) Remove(r Ref, owner string, flatten bool) error { return ErrNoCeph }
func (c *Conn) Snapshot(r Ref, protect bool) error             { return ErrNoCeph }
func (c *Conn) RemoveSnapshot(r Ref) error                     { return ErrNoCeph }
func (c *Conn) Status(r Ref) (ImageStatus, error)              { return ImageStatus{Ref: r}, ErrNoCeph }

func (c *Conn) importRaw(ctx context.Context, src io.ReaderAt, size uint64, dst Ref, owner string, progress Progress) error {
	return ErrNoCeph
}

func (c *Conn) Lease(pool, oid, cookie string, ttl time.Duration) (bool, LeaseHolder, error) {
	return false, LeaseHolder{}, ErrNoCeph
}
func (c *Conn) Holder(pool, oid string) (LeaseHolder, error)         { return LeaseHolder{}, ErrNoCeph }
func (c *Conn) ReleaseLease(pool, oid, cookie string) error          { return ErrNoCeph }
func (c *Conn) FenceEpoch(pool, oid string, epoch uint64) error      { return ErrNoCeph }
func (c *Conn) Blocklist(addr string) error                          { return ErrNoCeph }
func (c *Conn) Addr() string                                         { return "" }
func (c *Conn) PoolQuota(pool string) (uint64, error)                { return 0, ErrNoCeph }
func (c *Conn) Claim(r Ref) ([]string, error)                        { return nil, ErrNoCeph }
func (c *Conn) BlocklistFor(addr string, expire time.Duration) error { return ErrNoCeph }
func (c *Conn) Unblocklist(addr string) error                        { return ErrNoCeph }
func (c *Conn) Blocklisted() (map[string]time.Time, error)           { return nil, ErrNoCeph }
func (c *Conn) BreakLock(r Ref, owner string) error                  { return ErrNoCeph }
func (c *Conn) Holders(r Ref) ([]string, []string, error)            { return nil, nil, ErrNoCeph }
