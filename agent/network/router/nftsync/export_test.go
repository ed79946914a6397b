package nftsync

// Reads returns how many times Sync has read a table from the kernel.
func Reads() int64 { return reads.Load() }

// ForgetAll empties the generation cache: a fresh process.
func ForgetAll() {
	cache.Lock()
	defer cache.Unlock()
	clear(cache.m)
}
