//go:build pacific

package ceph

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/strata-infra/strata/pkg/rbd"
)

// Server serves one connection's operations to rbd.Conn (net/rpc, as
// service "RBD"): strata-rbd runs one per rbd.Conn.
type Server struct {
	mu      sync.Mutex
	conn    *Conn
	imports map[uint64]*importJob
}

// importJob is a running import, for its progress and its cancellation.
type importJob struct {
	done   atomic.Uint64
	cancel context.CancelFunc
}

// NewServer returns a server with no connection yet: the first request
// is Connect.
func NewServer() *Server { return &Server{imports: map[uint64]*importJob{}} }

// Close shuts the connection down (watches and sessions end at once
// instead of timing out on the cluster).
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// Do runs one request; its error travels in the response.
func (s *Server) Do(q rbd.Request, p *rbd.Response) error {
	p.SetErr(s.do(q, p))
	return nil
}

func (s *Server) do(q rbd.Request, p *rbd.Response) (err error) {
	if q.Op == "Ping" { // the caller's watchdog: this process still answers
		return nil
	}
	s.mu.Lock()
	c := s.conn
	if q.Op == "Connect" && c == nil {
		s.conn, err = Connect(q.Config)
	}
	s.mu.Unlock()
	switch {
	case q.Op == "Connect" && c != nil:
		return errors.New("connect: already connected")
	case q.Op == "Connect":
		return err
	case c == nil:
		return fmt.Errorf("%s: not connected", q.Op)
	}
	switch q.Op {
	case "CheckPool":
		return c.CheckPool(q.Pool)
	case "List":
		p.Names, err = c.List(q.Pool)
	case "Create":
		return c.Create(q.Ref, q.Size, q.Owner)
	case "Clone":
		return c.Clone(q.Ref, q.Ref2, q.Owner)
	case "Copy":
		return c.Copy(q.Ref, q.Ref2, q.Owner)
	case "Resize":
		return c.Resize(q.Ref, q.Size)
	case "Flatten":
		return c.Flatten(q.Ref)
	case "Remove":
		return c.Remove(q.Ref, q.Owner, q.Flag)
	case "Snapshot":
		return c.Snapshot(q.Ref, q.Flag)
	case "RemoveSnapshot":
		return c.RemoveSnapshot(q.Ref)
	case "Status":
		p.Status, err = c.Status(q.Ref)
	case "Claim":
		p.Names, err = c.Claim(q.Ref)
	case "Holders":
		p.Names, p.Names2, err = c.Holders(q.Ref)
	case "BreakLock":
		return c.BreakLock(q.Ref, q.Owner)
	case "BlocklistFor":
		return c.BlocklistFor(q.Addr, q.TTL)
	case "Unblocklist":
		return c.Unblocklist(q.Addr)
	case "Blocklisted":
		p.Until, err = c.Blocklisted()
	case "Blocklist":
		return c.Blocklist(q.Addr)
	case "Lease":
		p.Flag, p.Holder, err = c.Lease(q.Pool, q.OID, q.Owner, q.TTL)
	case "Holder":
		p.Holder, err = c.Holder(q.Pool, q.OID)
	case "ReleaseLease":
		return c.ReleaseLease(q.Pool, q.OID, q.Owner)
	case "BreakLease":
		return c.BreakLease(q.Pool, q.OID, rbd.LeaseHolder{Cookie: q.Owner, Addr: q.Addr})
	case "FenceEpoch":
		return c.FenceEpoch(q.Pool, q.OID, q.N)
	case "ActedEpoch":
		p.N, err = c.ActedEpoch(q.Pool, q.OID)
	case "Addr":
		p.Addr = c.Addr()
	case "PoolQuota":
		p.N, err = c.PoolQuota(q.Pool)
	case "Import":
		return s.importFile(c, q)
	case "ImportProgress":
		s.mu.Lock()
		if j := s.imports[q.N]; j != nil {
			p.N = j.done.Load()
		}
		s.mu.Unlock()
	case "ImportCancel":
		s.mu.Lock()
		if j := s.imports[q.N]; j != nil {
			j.cancel()
		}
		s.mu.Unlock()
	default:
		return fmt.Errorf("strata-rbd: unknown operation %q (a helper older than its caller?)", q.Op)
	}
	return err
}

// importFile imports the raw file q.Path as job q.N.
func (s *Server) importFile(c *Conn, q rbd.Request) error {
	f, err := os.Open(q.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	j := &importJob{cancel: cancel}
	s.mu.Lock()
	s.imports[q.N] = j
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.imports, q.N)
		s.mu.Unlock()
	}()
	return c.ImportRaw(ctx, f, q.Size, q.Ref, q.Owner, func(done, _ uint64) {
		// The workers report out of order: keep the highest.
		for {
			cur := j.done.Load()
			if done <= cur || j.done.CompareAndSwap(cur, done) {
				return
			}
		}
	})
}
