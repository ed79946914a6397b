//go:build pacific

package ceph

import (
	"encoding/json"
	"fmt"
)

// PoolQuota reads a pool's byte quota (0: none).
func (c *Conn) PoolQuota(pool string) (uint64, error) {
	cmd, _ := json.Marshal(map[string]string{"prefix": "osd pool get-quota", "pool": pool, "format": "json"})
	out, st, err := c.rados.MonCommand(cmd)
	if err != nil {
		return 0, fmt.Errorf("quota of pool %q: %w: %s", pool, err, st)
	}
	var q struct {
		MaxBytes uint64 `json:"quota_max_bytes"`
	}
	if err := json.Unmarshal(out, &q); err != nil {
		return 0, fmt.Errorf("quota of pool %q: %w", pool, err)
	}
	return q.MaxBytes, nil
}
