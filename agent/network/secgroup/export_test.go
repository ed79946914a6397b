package secgroup

import (
	"github.com/google/nftables"
	"github.com/strata-infra/strata/agent/network/nftsync"
)

// SetBeforeSync lets tests see each batch's table and add an operation
// that makes the kernel refuse it.
func (d *Driver) SetBeforeSync(f func(c *nftables.Conn, want nftsync.Table)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.beforeSync = f
}

// IngressChain is the chain of what port id receives.
func IngressChain(id string) string { return ingressChain(id) }

// Builds is how many times the driver compiled its tables.
func (d *Driver) Builds() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.builds
}
