package cachedvol

import (
	"context"
	"strings"
	"testing"

	"github.com/strata-infra/strata/agent/storage/dmcache"
)

// fakeVG is a volume group: it carves LVs by name and logs what it does.
type fakeVG struct {
	fakeFast
	lvs     map[string]int64
	log     []string
	failLV2 bool // the second Carve fails (an agent killed mid-carve)
}

func (g *fakeVG) Path() string { return "/dev/vg0" }

func (g *fakeVG) Carve(_ context.Context, name string, sectors int64) (Slice, error) {
	if g.failLV2 && len(g.lvs) == 1 {
		g.failLV2 = false
		return Slice{}, context.Canceled
	}
	if _, ok := g.lvs[name]; !ok {
		g.lvs[name] = (sectors + 2047) / 2048 * 2048
		g.log = append(g.log, "carve "+name)
	}
	return Slice{Path: "/dev/vg0/" + name, Sectors: g.lvs[name]}, nil
}

func (g *fakeVG) Activate(context.Context, Slice) error { return nil }

func (g *fakeVG) Drop(_ context.Context, s Slice) error {
	name := strings.TrimPrefix(s.Path, "/dev/vg0/")
	if _, ok := g.lvs[name]; ok {
		delete(g.lvs, name)
		g.log = append(g.log, "drop "+name)
	}
	return nil
}

// TestVolumeGroupCarvesAnLVPerCache: on a volume group each cache gets LVs
// of its own (data, and metadata for dm-cache), the devices are built on
// them from offset 0, a fresh one is zeroed, an attach killed mid-carve
// carves the rest on the next attach, and the detach (after the flush)
// drops them.
func TestVolumeGroupCarvesAnLVPerCache(t *testing.T) {
	r := newRig(t)
	vg := &fakeVG{lvs: map[string]int64{}, failLV2: true}
	r.m.Fast = vg
	ctx := context.Background()
	if _, err := r.m.Attach(ctx, vol("wt", dmcache.Writethrough)); err == nil {
		t.Fatal("attach went on without its metadata LV")
	}
	if _, err := r.m.Attach(ctx, vol("wt", dmcache.Writethrough)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.m.Attach(ctx, vol("wb", dmcache.Writeback)); err != nil {
		t.Fatal(err)
	}
	log := strings.Join(r.dm.log, "\n")
	for _, want := range []string{
		"create strata-wt-cdata: 0 131072 linear /dev/vg0/strata-wt-cdata 0",
		"create strata-wt-cmeta: 0 ",
		"create strata-wb-cdata: 0 131072 linear /dev/vg0/strata-wb-cdata 0",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("dm calls lack %q:\n%s", want, log)
		}
	}
	if got := strings.Join(vg.log, ","); got != "carve strata-wt-cdata,carve strata-wt-cmeta,carve strata-wb-cdata" {
		t.Errorf("LVs carved: %s", got)
	}
	if len(vg.zeroed) != 3 {
		t.Errorf("fresh caches zeroed: %+v", vg.zeroed)
	}
	r.dm.write("strata-wb", 100)
	for _, v := range []string{"wb", "wt"} {
		if err := r.m.Detach(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	if len(vg.lvs) != 0 {
		t.Errorf("LVs left after the detaches: %v", vg.lvs)
	}
	log = strings.Join(r.dm.log, "\n")
	if strings.Index(log, "message strata-wb cleaner") > strings.Index(log, "remove strata-wb-cdata") {
		t.Errorf("the cache's devices went before its flush:\n%s", log)
	}
}
