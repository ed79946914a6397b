//go:build pacific

package ceph

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/strata-infra/strata/pkg/rbd"
)

// importChunk is one RBD object: each write fills one object, and all-zero
// chunks are skipped so the image stays thin.
const (
	importChunk   = 4 << 20
	importWorkers = 4
)

// ImportRaw writes a raw image of size bytes from src into a new image dst
// owned by owner, then takes the protected rbd.BaseSnap. A failure removes the
// half-written image again.
func (c *Conn) ImportRaw(ctx context.Context, src io.ReaderAt, size uint64, dst rbd.Ref, owner string, progress rbd.Progress) (err error) {
	// Never write into an existing image: it may have clones.
	if _, err := c.Status(dst); err == nil {
		return fmt.Errorf("import into %s: %w", dst, rbd.ErrExists)
	} else if !errors.Is(err, rbd.ErrNotFound) {
		return err
	}
	if err := c.Create(dst, size, owner); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			c.Remove(dst, owner, false)
		}
	}()
	img, done, err := c.open(dst)
	if err != nil {
		return err
	}
	defer done()
	var (
		next, written atomic.Uint64
		wg            sync.WaitGroup
		mu            sync.Mutex
		firstErr      error
	)
	fail := func(e error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = e
		}
		mu.Unlock()
	}
	zero := make([]byte, importChunk)
	for range importWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, importChunk)
			for {
				off := next.Add(importChunk) - importChunk
				if off >= size || ctx.Err() != nil {
					return
				}
				n := min(uint64(importChunk), size-off)
				if _, err := src.ReadAt(buf[:n], int64(off)); err != nil && err != io.EOF {
					fail(fmt.Errorf("read source at %d: %w", off, err))
					return
				}
				if !bytes.Equal(buf[:n], zero[:n]) {
					if _, err := img.WriteAt(buf[:n], int64(off)); err != nil {
						fail(fmt.Errorf("write %s at %d: %w", dst, off, mapErr(dst, err)))
						return
					}
				}
				d := written.Add(n)
				if progress != nil {
					progress(d, size)
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := img.Flush(); err != nil {
		return fmt.Errorf("flush %s: %w", dst, mapErr(dst, err))
	}
	return c.Snapshot(rbd.Ref{Pool: dst.Pool, Image: dst.Image, Snap: rbd.BaseSnap}, true)
}
