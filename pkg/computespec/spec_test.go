package computespec

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
)

func goodInstance() Instance {
	return Instance{
		ID: "i-1", Flavor: "m1.tiny", Image: "busybox", Power: PowerRunning,
		Ports:  []Port{{ID: "p1", NetworkID: "n1", VNI: 5001, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}}},
		SSHKey: "ssh-ed25519 AAAAC3Nza user@host",
	}
}

func catalog() Catalog {
	return Catalog{
		Flavors: map[string]Flavor{"m1.tiny": {Name: "m1.tiny", VCPUs: 1, RAMMiB: 128, DiskGiB: 1}},
		Images:  map[string]Image{"busybox": {ID: "busybox", Format: FormatRaw, Path: "/var/lib/strata/images/busybox.raw"}},
	}
}

func TestResolveNamesTheField(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Instance)
		field string
	}{
		{"ok", func(*Instance) {}, ""},
		{"bad id", func(i *Instance) { i.ID = "I_1" }, "instance.id"},
		{"bad name", func(i *Instance) { i.Name = "-x" }, "instance.name"},
		{"unknown flavor", func(i *Instance) { i.Flavor = "m1.huge" }, "instance.flavor"},
		{"unknown image", func(i *Instance) { i.Image = "win" }, "instance.image"},
		{"user data over 64 KiB", func(i *Instance) { i.UserData = bytes.Repeat([]byte("x"), MaxUserData+1) }, "instance.user_data"},
		{"two-line ssh key", func(i *Instance) { i.SSHKey = "ssh-rsa A\nssh-rsa B" }, "instance.ssh_key"},
		{"power", func(i *Instance) { i.Power = "on" }, "instance.power"},
		{"vni", func(i *Instance) { i.Ports[0].VNI = 0 }, "instance.ports[0].vni"},
		{"multicast mac", func(i *Instance) { i.Ports[0].MAC = net.HardwareAddr{1, 0, 0, 0, 0, 1} }, "instance.ports[0].mac"},
		{"duplicate port", func(i *Instance) { i.Ports = append(i.Ports, i.Ports[0]) }, "instance.ports[1].id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := goodInstance()
			tt.edit(&in)
			_, _, err := catalog().Resolve(in)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Resolve error %v, want a FieldError on %s", err, tt.field)
			}
			if !strings.HasPrefix(err.Error(), tt.field+": ") {
				t.Errorf("error %q does not start with the field", err)
			}
		})
	}
}

func TestUserDataAtLimitIsFine(t *testing.T) {
	in := goodInstance()
	in.UserData = bytes.Repeat([]byte("x"), MaxUserData)
	if err := in.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestFlavorAndImageValidate(t *testing.T) {
	for _, tt := range []struct {
		err   error
		field string
	}{
		{Flavor{Name: "a", VCPUs: 0, RAMMiB: 128}.Validate(), "flavor.vcpus"},
		{Flavor{Name: "a", VCPUs: 1, RAMMiB: 32}.Validate(), "flavor.ram_mib"},
		{Flavor{Name: "a", VCPUs: 1, RAMMiB: 64, DiskGiB: -1}.Validate(), "flavor.disk_gib"},
		{Flavor{Name: "a", VCPUs: 1, RAMMiB: 64, ExtraSpecs: map[string]string{"a b": "1"}}.Validate(), "flavor.extra_specs"},
		{Image{ID: "x", Format: "vmdk", Path: "/x"}.Validate(), "image.format"},
		{Image{ID: "x", Format: FormatQCOW2, Path: "x"}.Validate(), "image.path"},
	} {
		var fe *FieldError
		if !errors.As(tt.err, &fe) || fe.Field != tt.field {
			t.Errorf("got %v, want a FieldError on %s", tt.err, tt.field)
		}
	}
}

func TestCapacityFits(t *testing.T) {
	host := Capacity{VCPUs: 2, RAMMiB: 1024, DiskGiB: 10}.Sub(Capacity{RAMMiB: 512})
	if err := host.Fits(Flavor{VCPUs: 1, RAMMiB: 512, DiskGiB: 10}); err != nil {
		t.Fatal(err)
	}
	var fe *FieldError
	if err := host.Fits(Flavor{VCPUs: 1, RAMMiB: 513}); !errors.As(err, &fe) || fe.Field != "flavor.ram_mib" {
		t.Fatalf("got %v, want flavor.ram_mib", err)
	}
	if got := (Capacity{}).Add(Flavor{VCPUs: 1, RAMMiB: 2, DiskGiB: 3}); got != (Capacity{1, 2, 3}) {
		t.Fatalf("Add = %+v", got)
	}
}
