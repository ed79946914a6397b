package compute

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kdomanski/iso9660"
)

// SeedLabel is the volume label cloud-init's NoCloud source looks for.
const SeedLabel = "cidata"

// seedFiles are the NoCloud files of an instance: meta-data, user-data and
// network-config (version 2, every NIC matched by MAC, DHCPv4).
func seedFiles(in Instance) map[string][]byte {
	var md strings.Builder
	fmt.Fprintf(&md, "instance-id: %s\nlocal-hostname: %s\n", in.Spec.ID, in.Spec.HostName())
	if in.Spec.SSHKey != "" {
		fmt.Fprintf(&md, "public-keys:\n  - %q\n", in.Spec.SSHKey)
	}
	var nc strings.Builder
	nc.WriteString("version: 2\nethernets:\n")
	for i, p := range in.Spec.Ports {
		fmt.Fprintf(&nc, "  nic%d:\n    match:\n      macaddress: %q\n    set-name: eth%d\n    dhcp4: true\n", i, p.MAC.String(), i)
	}
	ud := in.Spec.UserData
	if ud == nil {
		ud = []byte{}
	}
	return map[string][]byte{
		"meta-data":      []byte(md.String()),
		"user-data":      ud,
		"network-config": []byte(nc.String()),
	}
}

// writeSeed writes the NoCloud ISO of an instance to path atomically.
// ISO 9660 names allow '-', so the files keep cloud-init's names (the Linux
// isofs driver shows "meta-data;1" as "meta-data").
func writeSeed(path string, files map[string][]byte) error {
	w, err := iso9660.NewWriter()
	if err != nil {
		return fmt.Errorf("seed iso %q: %w", path, err)
	}
	defer w.Cleanup()
	for name, data := range files {
		if err := w.AddFile(bytes.NewReader(data), name); err != nil {
			return fmt.Errorf("seed iso %q: add %s: %w", path, name, err)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".seed-*.iso")
	if err != nil {
		return fmt.Errorf("seed iso %q: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := w.WriteTo(tmp, SeedLabel); err != nil {
		tmp.Close()
		return fmt.Errorf("seed iso %q: write: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("seed iso %q: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("seed iso %q: %w", path, err)
	}
	return nil
}
