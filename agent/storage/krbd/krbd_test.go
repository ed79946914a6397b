package krbd

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSys lays out /sys/bus/rbd as the kernel shows it, with the given
// devices, and an empty /dev.
func fakeSys(t *testing.T, devs map[string]Image) *Mapper {
	t.Helper()
	root := t.TempDir()
	bus := filepath.Join(root, "sys", "bus", "rbd")
	for _, f := range []string{"add_single_major", "remove_single_major"} {
		if err := os.MkdirAll(bus, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bus, f), nil, 0o200); err != nil {
			t.Fatal(err)
		}
	}
	for id, img := range devs {
		d := filepath.Join(bus, "devices", id)
		os.MkdirAll(d, 0o755)
		snap := img.Snap
		if snap == "" {
			snap = "-"
		}
		for f, v := range map[string]string{"pool": img.Pool, "name": img.Name, "current_snap": snap, "major": "251", "minor": "0"} {
			if err := os.WriteFile(filepath.Join(d, f), []byte(v+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	os.MkdirAll(filepath.Join(root, "dev"), 0o755)
	return &Mapper{Sys: filepath.Join(root, "sys"), Dev: filepath.Join(root, "dev")}
}

func TestListAndFind(t *testing.T) {
	a := Image{Pool: "volumes", Name: "volume-a"}
	b := Image{Pool: "volumes", Name: "volume-a", Snap: "s1"}
	m := fakeSys(t, map[string]Image{"0": a, "3": b})
	ds, err := m.List()
	if err != nil || len(ds) != 2 || ds[0].ID != 0 || ds[1].ID != 3 || ds[0].Image != a || ds[1].Image != b {
		t.Fatalf("List = %+v, %v", ds, err)
	}
	if ds[1].Path != filepath.Join(m.Dev, "rbd3") {
		t.Errorf("path %q", ds[1].Path)
	}
	if d, ok, err := m.Find(b); err != nil || !ok || d.ID != 3 {
		t.Errorf("Find(%s) = %+v %v %v", b, d, ok, err)
	}
	if _, ok, err := m.Find(Image{Pool: "volumes", Name: "other"}); err != nil || ok {
		t.Errorf("Find(other) = %v %v", ok, err)
	}
	if why := m.Available(); why != "" {
		t.Errorf("Available: %s", why)
	}
	if why := (&Mapper{Sys: t.TempDir()}).Available(); why == "" {
		t.Error("Available without the rbd bus says yes")
	}
}

func TestMapAdoptsWhatIsMapped(t *testing.T) {
	img := Image{Pool: "volumes", Name: "volume-a"}
	m := fakeSys(t, map[string]Image{"2": img})
	d, err := m.Map(context.Background(), Auth{Monitors: []string{"10.0.0.1:6789"}, User: "strata", Key: "QUJD"}, img, Options{Exclusive: true})
	if err != nil || d.ID != 2 {
		t.Fatalf("Map = %+v, %v", d, err)
	}
	// Adopted: nothing was written to the kernel.
	if b, _ := os.ReadFile(filepath.Join(m.Sys, "bus", "rbd", "add_single_major")); len(b) != 0 {
		t.Errorf("Map of a mapped image wrote %q", b)
	}
}

func TestAddLine(t *testing.T) {
	a := Auth{Monitors: []string{"10.0.0.1:6789", "10.0.0.2:6789"}, User: "strata", Key: "QUJDRA=="}
	got, err := addLine(a, Image{Pool: "volumes", Name: "volume-a"}, Options{Exclusive: true})
	want := "10.0.0.1:6789,10.0.0.2:6789 name=strata,secret=QUJDRA==,exclusive volumes volume-a -"
	if err != nil || got != want {
		t.Errorf("addLine = %q, %v; want %q", got, err, want)
	}
	got, _ = addLine(a, Image{Pool: "volumes", Name: "volume-a", Snap: "s1"}, Options{})
	if !strings.HasSuffix(got, "name=strata,secret=QUJDRA== volumes volume-a s1") {
		t.Errorf("snapshot line %q", got)
	}
	for _, c := range []struct {
		a   Auth
		img Image
	}{
		{Auth{User: "strata", Key: "k"}, Image{Pool: "p", Name: "n"}},
		{a, Image{Pool: "p"}},
		{a, Image{Pool: "p", Name: "a b"}},
		{Auth{Monitors: []string{"m"}, User: "x,y", Key: "k"}, Image{Pool: "p", Name: "n"}},
	} {
		if l, err := addLine(c.a, c.img, Options{}); err == nil {
			t.Errorf("addLine(%+v, %+v) accepted: %q", c.a, c.img, l)
		}
	}
}

func TestUnmap(t *testing.T) {
	img := Image{Pool: "volumes", Name: "volume-a"}
	m := fakeSys(t, map[string]Image{"1": img})
	// Not mapped (or the id maps another image now): nothing to do.
	if err := m.Unmap(context.Background(), Device{ID: 7, Image: img}, false); err != nil {
		t.Errorf("unmap of an unmapped device: %v", err)
	}
	if err := m.Unmap(context.Background(), Device{ID: 1, Image: Image{Pool: "volumes", Name: "other"}}, false); err != nil {
		t.Errorf("unmap of an id now mapping another image: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(m.Sys, "bus", "rbd", "remove_single_major")); len(b) != 0 {
		t.Errorf("unmap of what is not mapped wrote %q", b)
	}
	if err := m.Unmap(context.Background(), Device{ID: 1, Image: img}, false); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(m.Sys, "bus", "rbd", "remove_single_major")); string(b) != "1" {
		t.Errorf("remove_single_major got %q, want 1", b)
	}
}
