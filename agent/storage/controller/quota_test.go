package controller

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/strata-infra/strata/pkg/api"
)

// TestControllerReportsPoolQuota: the quota an operator sets on a pool
// reaches the volume type's status, where the coordinator checks sizes
// against it.
func TestControllerReportsPoolQuota(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.controller(t, "h1", 5*time.Second)
	if _, err := f.cl.Ceph(ctx, "osd", "pool", "set-quota", f.pool, "max_bytes", "5368709120"); err != nil {
		t.Fatal(err)
	}
	p := planOf(t, 3, res{"volumetype", "", "default", api.VolumeTypeSpec{Pool: f.pool}})
	if err := c.Reconcile(ctx, p); err != nil {
		t.Fatal(err)
	}
	rs, ok := statusOf(c, "default")
	var d api.PoolDetail
	json.Unmarshal(rs.Detail, &d)
	if !ok || rs.State != StateAvailable || d.Pool != f.pool || d.QuotaMaxBytes != 5<<30 || d.Controller != "h1" {
		t.Fatalf("volume type status %+v, detail %+v; want the pool's 5 GiB quota", rs, d)
	}
}
