package router

import "github.com/google/nftables"

// SetBeforeFlush lets tests add an operation to the next batch, e.g. one
// that makes the kernel refuse it.
func (d *Driver) SetBeforeFlush(f func(c *nftables.Conn)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.beforeFlush = f
}
