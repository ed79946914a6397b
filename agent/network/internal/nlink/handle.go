package nlink

import (
	"sync"

	"github.com/vishvananda/netlink"
)

// CloseHandle closes a driver's netlink handle once, under the driver's
// lock, and leaves it nil so a later Set reports the driver closed. What
// the driver built on the host stays: closing is not tearing down.
func CloseHandle(mu *sync.Mutex, h **netlink.Handle) error {
	mu.Lock()
	defer mu.Unlock()
	if *h != nil {
		(*h).Close()
		*h = nil
	}
	return nil
}
