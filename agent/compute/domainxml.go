package compute

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/strata-infra/strata/pkg/computespec"
	"libvirt.org/go/libvirtxml"
)

// domainMeta is the Strata metadata element of a domain.
type domainMeta struct {
	XMLName xml.Name `xml:"instance"`
	ID      string   `xml:"id"`
	Hash    string   `xml:"hash"` // configHash of what the domain was defined from
	Taps    []string `xml:"tap"`  // the taps of its NICs, removed with it
}

// metaXML renders the metadata element in MetadataNS.
func metaXML(m domainMeta) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<%s:instance xmlns:%s=%q><%s:id>`, MetadataPrefix, MetadataPrefix, MetadataNS, MetadataPrefix)
	xml.EscapeText(&b, []byte(m.ID))
	fmt.Fprintf(&b, `</%s:id><%s:hash>%s</%s:hash>`, MetadataPrefix, MetadataPrefix, m.Hash, MetadataPrefix)
	for _, t := range m.Taps {
		fmt.Fprintf(&b, `<%s:tap>%s</%s:tap>`, MetadataPrefix, t, MetadataPrefix)
	}
	fmt.Fprintf(&b, `</%s:instance>`, MetadataPrefix)
	return b.String()
}

// parseMeta reads the metadata element libvirt hands back; ok is false when
// it is empty or not Strata's.
func parseMeta(s string) (domainMeta, bool) {
	var m domainMeta
	if strings.TrimSpace(s) == "" || xml.Unmarshal([]byte(s), &m) != nil || m.ID == "" {
		return domainMeta{}, false
	}
	return m, true
}

// configHash identifies everything a domain definition is built from, so
// that a changed flavor, image, port or boot redefines it and nothing else
// does. Power state and reboots are not part of it.
func configHash(in Instance, domainType string) string {
	spec := in.Spec
	spec.Power, spec.Reboots = "", 0
	// Volumes are hot-plugged, and a grown root is told to the running
	// guest: neither redefines the domain.
	spec.Volumes = nil
	if spec.Root != nil {
		r := *spec.Root
		r.SizeBytes = 0
		spec.Root = &r
	}
	b, _ := json.Marshal(struct {
		Spec                         any
		Flavor, Image, Boot, DomType any
	}{spec, in.Flavor, in.Image, in.Boot, domainType})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}

// domainXML builds the libvirt definition of an instance.
// root, when set, is the RBD root disk (vda) replacing the local one.
func domainXML(in Instance, name, domainType string, f instanceFiles, root *libvirtxml.DomainDisk) (string, error) {
	os := &libvirtxml.DomainOS{
		Type: &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
	}
	if b := in.Boot; b != nil {
		os.Kernel, os.Initrd, os.Cmdline = b.Kernel, b.Initrd, b.Cmdline
		if b.Firmware != "" {
			os.Loader = &libvirtxml.DomainLoader{Path: b.Firmware, Type: "rom"}
		}
	} else {
		os.BootDevices = []libvirtxml.DomainBootDevice{{Dev: "hd"}}
	}
	diskFormat := string(in.Image.Format)
	devs := &libvirtxml.DomainDeviceList{
		Disks: []libvirtxml.DomainDisk{
			{
				Device: "disk",
				Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: diskFormat},
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: f.Disk}},
				Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
			},
			{
				Device:   "cdrom",
				Driver:   &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "raw"},
				Source:   &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: f.Seed}},
				Target:   &libvirtxml.DomainDiskTarget{Dev: "hdc", Bus: "ide"},
				ReadOnly: &libvirtxml.DomainDiskReadOnly{},
			},
		},
		Serials: []libvirtxml.DomainSerial{{
			Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: f.Console, Append: "on"}},
			Target: &libvirtxml.DomainSerialTarget{Port: new(uint)},
		}},
		MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
	}
	if root != nil {
		devs.Disks[0] = *root
	}
	for _, p := range in.Spec.Ports {
		if p.Bridge == "" {
			return "", fmt.Errorf("domain %q port %q: no bridge to plug into", name, p.ID)
		}
		nic := libvirtxml.DomainInterface{
			MAC:    &libvirtxml.DomainInterfaceMAC{Address: p.MAC.String()},
			Source: &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: p.Bridge}},
			Target: &libvirtxml.DomainInterfaceTarget{Dev: TapName(p.ID)},
			Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
			// No option ROM: iPXE is of no use to a direct or disk boot.
			ROM: &libvirtxml.DomainROM{Enabled: "no"},
		}
		if p.Switch == computespec.SwitchOpenVSwitch {
			nic.VirtualPort = &libvirtxml.DomainInterfaceVirtualPort{Params: &libvirtxml.DomainInterfaceVirtualPortParams{
				OpenVSwitch: &libvirtxml.DomainInterfaceVirtualPortParamsOpenVSwitch{}}}
		}
		if p.FullChecksums {
			nic.Driver = &libvirtxml.DomainInterfaceDriver{Host: &libvirtxml.DomainInterfaceDriverHost{CSum: "off"}}
		}
		devs.Interfaces = append(devs.Interfaces, nic)
	}
	meta := domainMeta{ID: in.Spec.ID, Hash: configHash(in, domainType)}
	for _, p := range in.Spec.Ports {
		meta.Taps = append(meta.Taps, TapName(p.ID))
	}
	dom := &libvirtxml.Domain{
		Type:     domainType,
		Name:     name,
		Metadata: &libvirtxml.DomainMetadata{XML: metaXML(meta)},
		Memory:   &libvirtxml.DomainMemory{Value: uint(in.Flavor.RAMMiB), Unit: "MiB"},
		VCPU:     &libvirtxml.DomainVCPU{Value: uint(in.Flavor.VCPUs)},
		OS:       os,
		Features: &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}},
		// A guest that powers off or crashes stays stopped and is reported.
		OnPoweroff: "destroy", OnReboot: "restart", OnCrash: "destroy",
		Devices: devs,
	}
	if domainType == DomainKVM {
		dom.CPU = &libvirtxml.DomainCPU{Mode: "host-passthrough"}
	}
	s, err := dom.Marshal()
	if err != nil {
		return "", fmt.Errorf("marshal domain %q: %w", name, err)
	}
	return s, nil
}
