package gossip

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"

	"github.com/strata-infra/strata/pkg/computespec"
)

func fullMeta() Meta {
	return Meta{
		Role:         RoleCoordinator,
		Zone:         "zone-a",
		Aggregates:   []string{"gpu", "ssd", "pci-passthrough"},
		VTEP:         netip.MustParseAddr("2001:db8::17"),
		VCPUs:        256,
		RAMMiB:       1 << 20,
		DiskGiB:      1 << 40,
		AppliedEpoch: 1<<63 + 5,
		APIAddr:      "https://coord-1.example:8443",
		Drained:      true,
	}
}

func TestMetaRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		meta Meta
	}{
		{"zero", Meta{}},
		{"agent minimal", Meta{Role: RoleAgent, Zone: "z1"}},
		{"agent ipv4 vtep", Meta{Role: RoleAgent, VTEP: netip.MustParseAddr("10.0.0.7"), VCPUs: 64, RAMMiB: 262144}},
		{"ipv4-mapped ipv6 vtep", Meta{Role: RoleAgent, VTEP: netip.MustParseAddr("::ffff:10.0.0.7")}},
		{"coordinator full", fullMeta()},
		{"max values", Meta{Role: 255, VCPUs: ^uint32(0), RAMMiB: ^uint64(0), DiskGiB: ^uint64(0), AppliedEpoch: ^uint64(0)}},
		{"empty strings in aggregates", Meta{Aggregates: []string{"", "a", ""}}},
		{"longest string", Meta{Zone: strings.Repeat("z", MaxStringLen)}},
		{"unknown role survives", Meta{Role: 9}},
		{"leaving flag", Meta{Role: RoleAgent, Drained: true, leaving: true}},
		{"arch and physnets", Meta{Role: RoleAgent, Arch: "aarch64", Physnets: []string{"physnet1", "physnet2"}}},
		{"hypervisor", Meta{Role: RoleAgent, Hypervisor: "qemu"}},
		{"hypervisor, arch and physnets", Meta{Role: RoleAgent, Arch: "x86_64", Physnets: []string{"p"}, Hypervisor: "kvm"}},
		{"physnets only", Meta{Role: RoleAgent, Physnets: []string{"p"}}},
		{"storage only", Meta{Role: RoleAgent, Storage: []string{"rbd:images", "rbd:volumes"}}},
		{"storage and the rest", Meta{Role: RoleAgent, Arch: "x86_64", Physnets: []string{"p"}, Hypervisor: "qemu", Storage: []string{"rbd:volumes"}}},
		{"allocation ratios only", Meta{Role: RoleAgent, VCPUs: 2, Ratios: computespec.Ratios{VCPU: 16, RAM: 1, Disk: 1}}},
		{"fractional ratios and the rest", Meta{Role: RoleAgent, Arch: "x86_64", Hypervisor: "kvm", Storage: []string{"rbd:v"},
			Ratios: computespec.Ratios{VCPU: 2.5, RAM: 1.125, Disk: computespec.MaxRatio}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.meta.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if b[0] != metaVersion {
				t.Fatalf("first byte = %d, want version %d", b[0], metaVersion)
			}
			got, err := DecodeMeta(b)
			if err != nil {
				t.Fatalf("DecodeMeta: %v", err)
			}
			if !got.Equal(tt.meta) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tt.meta)
			}
		})
	}
}

func TestMetaSizeLimits(t *testing.T) {
	many := make([]string, 0, 40)
	for range 40 {
		many = append(many, strings.Repeat("a", 20))
	}
	tests := []struct {
		name      string
		meta      Meta
		wantErr   error
		wantField string
	}{
		{"string too long", Meta{Zone: strings.Repeat("z", MaxStringLen+1)}, ErrStringTooLong, "zone"},
		{"aggregate too long", Meta{Aggregates: []string{"ok", strings.Repeat("x", 300)}}, ErrStringTooLong, "aggregates[1]"},
		{"too many aggregates", Meta{Aggregates: many}, ErrMetaTooLarge, "aggregates[24]"},
		{"api addr overflows", Meta{Zone: strings.Repeat("z", 255), Aggregates: []string{strings.Repeat("g", 200)}, APIAddr: strings.Repeat("h", 100)}, ErrMetaTooLarge, "api_addr"},
		{"zoned vtep", Meta{VTEP: netip.MustParseAddr("fe80::1%eth0")}, nil, "vtep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.meta.Encode()
			if err == nil {
				t.Fatal("Encode succeeded, want error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), "field "+tt.wantField+":") {
				t.Errorf("error %q does not name field %q", err, tt.wantField)
			}
		})
	}

	// Largest meta that fits: exactly at the limit is fine.
	m := Meta{Zone: strings.Repeat("z", 255), Aggregates: []string{strings.Repeat("g", 200)}}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m.APIAddr = strings.Repeat("h", memberlist.MetaMaxSize-len(b)) // < 128: one-byte length prefix
	if b, err = m.Encode(); err != nil || len(b) != memberlist.MetaMaxSize {
		t.Fatalf("meta at the limit: len %d, err %v", len(b), err)
	}
}

func TestDecodeMetaErrors(t *testing.T) {
	good, err := fullMeta().Encode()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"empty", nil, ErrTruncatedMeta},
		{"version 0", []byte{0, 1}, ErrUnsupportedVersion},
		{"version 2", append([]byte{2}, good[1:]...), ErrUnsupportedVersion},
		{"truncated", good[:len(good)-1], ErrTruncatedMeta},
		{"only version", []byte{1}, ErrTruncatedMeta},
		{"too large", append(append([]byte{}, good...), make([]byte, memberlist.MetaMaxSize)...), ErrMetaTooLarge},
		{"bad vtep length", []byte{1, 1, 0, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0, 0, 0, 0}, nil},
		{"role above 255", []byte{1, 0x80, 0x02}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeMeta(tt.in)
			if err == nil {
				t.Fatal("DecodeMeta succeeded, want error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// A newer minor writer appends fields and sets new flag bits; this reader
// must still decode what it knows.
func TestDecodeMetaIgnoresNewerTrailingFields(t *testing.T) {
	want := fullMeta()
	b, err := want.Encode()
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] |= 0x40 // reserved flag bit in the one-byte flags varint
	// Version 1.1 to 1.4 fields, then fields this reader does not know.
	want.Arch, want.Physnets, want.Hypervisor, want.Storage = "x86_64", []string{"physnet1"}, "kvm", []string{"rbd:vol"}
	want.Ratios = computespec.Ratios{VCPU: 16, RAM: 1.5, Disk: 1}
	b = append(b, 6, 'x', '8', '6', '_', '6', '4', 1, 8, 'p', 'h', 'y', 's', 'n', 'e', 't', '1')
	b = append(b, 3, 'k', 'v', 'm')
	b = append(b, 1, 7, 'r', 'b', 'd', ':', 'v', 'o', 'l')
	b = binary.AppendUvarint(binary.AppendUvarint(binary.AppendUvarint(b, 16000), 1500), 1000)
	b = append(b, 0x07, 3, 'n', 'e', 'w', 0xff)
	got, err := DecodeMeta(b)
	if err != nil {
		t.Fatalf("DecodeMeta: %v", err)
	}
	if !got.Equal(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestEncodeMetaRefusesBadRatio(t *testing.T) {
	_, err := Meta{Role: RoleAgent, Ratios: computespec.Ratios{VCPU: -2}}.Encode()
	if err == nil || !strings.Contains(err.Error(), "ratios.vcpu") {
		t.Fatalf("Encode: %v, want an error naming ratios.vcpu", err)
	}
	// A meta without ratios encodes exactly as before version 1.4.
	old := Meta{Role: RoleAgent, Zone: "z", VCPUs: 4}
	b, err := old.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{metaVersion, 1, 1, 'z', 0, 0, 4, 0, 0, 0, 0, 0}; string(b) != string(want) {
		t.Fatalf("encoding % x, want % x", b, want)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []Meta{{}, fullMeta(), {Role: RoleAgent, VTEP: netip.MustParseAddr("192.0.2.1")}} {
		b, err := m.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{1, 0x80, 0x80, 0x80})
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := DecodeMeta(in)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode (canonically, never larger than
		// the input) and decode to the same value.
		b, err := m.Encode()
		if err != nil {
			t.Fatalf("decoded %+v but Encode failed: %v", m, err)
		}
		m2, err := DecodeMeta(b)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !m2.Equal(m) {
			t.Fatalf("round trip changed meta:\n got %+v\nwant %+v", m2, m)
		}
	})
}
