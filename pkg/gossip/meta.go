package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"

	"github.com/hashicorp/memberlist"

	"github.com/strata-infra/strata/pkg/computespec"
)

// Role says what a node does in the pool.
type Role uint8

const (
	RoleUnknown     Role = 0
	RoleAgent       Role = 1
	RoleCoordinator Role = 2
)

func (r Role) String() string {
	switch r {
	case RoleUnknown:
		return "unknown"
	case RoleAgent:
		return "agent"
	case RoleCoordinator:
		return "coordinator"
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}

// Meta is what a node advertises about itself in the pool.
type Meta struct {
	Role         Role
	Zone         string
	Aggregates   []string
	VTEP         netip.Addr // tunnel endpoint; the zero Addr means unset
	VCPUs        uint32
	RAMMiB       uint64
	DiskGiB      uint64
	AppliedEpoch uint64
	APIAddr      string // coordinator's API URL; empty for agents
	Drained      bool
	// Arch is the host's machine architecture ("x86_64") and Physnets the
	// physical networks it bridges, for the scheduler (minor version 1.1).
	Arch     string
	Physnets []string
	// Hypervisor is the libvirt domain type the host's instances run as
	// ("kvm", or "qemu" for TCG), empty without compute (minor version
	// 1.2): images that name a hypervisor type are placed by it.
	Hypervisor string
	// Storage are the storage backends the host's agent is configured
	// for, "rbd:<pool>" per Ceph pool (storagespec.Backend), for the
	// scheduler (minor version 1.3).
	Storage []string
	// Ratios are the allocation ratios the host's agent admits instances
	// by, for the scheduler to place by the same (minor version 1.4);
	// zero ratios mean none announced.
	Ratios computespec.Ratios

	// leaving is set only by Member.Leave, just before memberlist's leave
	// message, so peers can tell a graceful leave from a failure: see
	// view.NotifyLeave.
	leaving bool
}

// Equal reports whether two metas carry the same values; a nil and an empty
// Aggregates are equal, as the encoding cannot tell them apart.
func (m Meta) Equal(o Meta) bool {
	return m.Role == o.Role && m.Zone == o.Zone &&
		slices.Equal(m.Aggregates, o.Aggregates) && m.VTEP == o.VTEP &&
		m.VCPUs == o.VCPUs && m.RAMMiB == o.RAMMiB && m.DiskGiB == o.DiskGiB &&
		m.AppliedEpoch == o.AppliedEpoch && m.APIAddr == o.APIAddr &&
		m.Drained == o.Drained && m.leaving == o.leaving &&
		m.Arch == o.Arch && slices.Equal(m.Physnets, o.Physnets) && m.Hypervisor == o.Hypervisor &&
		slices.Equal(m.Storage, o.Storage) && m.Ratios == o.Ratios
}

func (m Meta) clone() Meta {
	m.Aggregates = slices.Clone(m.Aggregates)
	m.Physnets = slices.Clone(m.Physnets)
	m.Storage = slices.Clone(m.Storage)
	return m
}

// Wire format, version 1. Integers are unsigned varints; a string is a varint
// length and then its bytes.
//
//	version    1 byte, = 1
//	role       varint (< 256)
//	zone       string
//	aggregates varint count, then that many strings
//	vtep       1 byte length (0, 4 or 16), then the address bytes
//	vcpus      varint (< 2^32)
//	ram_mib    varint
//	disk_gib   varint
//	epoch      varint
//	api_addr   string
//	flags      varint; bit 0 = drained, bit 1 = leaving, others reserved
//
// Appended in minor version 1.1, written only when one is set (so a meta
// without them encodes as before):
//
//	arch       string
//	physnets   varint count, then that many strings
//
// Appended in minor version 1.2, written only when set (the 1.1 fields
// are then written too, empty or not):
//
//	hypervisor string
//
// Appended in minor version 1.3, written only when set (the 1.1 and 1.2
// fields are then written too, empty or not):
//
//	storage    varint count, then that many strings
//
// Appended in minor version 1.4, written only when a ratio is set (the
// 1.1 to 1.3 fields are then written too, empty or not):
//
//	ratios     three varints: vcpu, ram and disk allocation ratios in
//	           thousandths (0 = not announced)
//
// Compatibility rule: a newer minor writer may append fields after flags and
// set reserved flag bits without changing the version byte; readers decode
// the fields they know and ignore the rest, so old agents keep reading new
// coordinators (and vice versa) during a rolling upgrade. Fields appended
// later must be optional for readers (absent means zero). Changing or
// reordering an existing field needs a new version byte, which older readers
// reject with ErrUnsupportedVersion. All version 1 fields are required.
const metaVersion = 1

// MaxStringLen bounds each string in Meta, well inside the meta budget.
const MaxStringLen = 255

var (
	ErrMetaTooLarge       = fmt.Errorf("node meta exceeds memberlist's %d-byte limit", memberlist.MetaMaxSize)
	ErrStringTooLong      = fmt.Errorf("string longer than %d bytes", MaxStringLen)
	ErrUnsupportedVersion = errors.New("unsupported node meta encoding version")
	ErrTruncatedMeta      = errors.New("node meta is truncated")
)

const (
	flagDrained = 1 << 0
	flagLeaving = 1 << 1
)

// Encode returns the binary form of m. It fails, naming the field, if a
// string is longer than MaxStringLen or the result would exceed
// memberlist.MetaMaxSize.
func (m Meta) Encode() ([]byte, error) {
	if m.VTEP.Zone() != "" {
		return nil, fmt.Errorf("encode meta field vtep: zoned address %s cannot be advertised", m.VTEP)
	}
	e := encoder{buf: make([]byte, 0, 96)}
	e.buf = append(e.buf, metaVersion)
	e.uvarint("role", uint64(m.Role))
	e.str("zone", -1, m.Zone)
	e.uvarint("aggregates", uint64(len(m.Aggregates)))
	for i, a := range m.Aggregates {
		e.str("aggregates", i, a)
	}
	vtep := m.VTEP.AsSlice() // nil when unset
	e.append("vtep", -1, append([]byte{byte(len(vtep))}, vtep...))
	e.uvarint("vcpus", uint64(m.VCPUs))
	e.uvarint("ram_mib", m.RAMMiB)
	e.uvarint("disk_gib", m.DiskGiB)
	e.uvarint("applied_epoch", m.AppliedEpoch)
	e.str("api_addr", -1, m.APIAddr)
	var flags uint64
	if m.Drained {
		flags |= flagDrained
	}
	if m.leaving {
		flags |= flagLeaving
	}
	e.uvarint("flags", flags)
	ratios := m.Ratios != (computespec.Ratios{})
	if err := m.Ratios.Validate("ratios"); err != nil {
		return nil, fmt.Errorf("encode meta field %w", err)
	}
	if m.Arch != "" || len(m.Physnets) > 0 || m.Hypervisor != "" || len(m.Storage) > 0 || ratios {
		e.str("arch", -1, m.Arch)
		e.uvarint("physnets", uint64(len(m.Physnets)))
		for i, p := range m.Physnets {
			e.str("physnets", i, p)
		}
	}
	if m.Hypervisor != "" || len(m.Storage) > 0 || ratios {
		e.str("hypervisor", -1, m.Hypervisor)
	}
	if len(m.Storage) > 0 || ratios {
		e.uvarint("storage", uint64(len(m.Storage)))
		for i, b := range m.Storage {
			e.str("storage", i, b)
		}
	}
	if ratios {
		e.uvarint("ratios", milli(m.Ratios.VCPU))
		e.uvarint("ratios", milli(m.Ratios.RAM))
		e.uvarint("ratios", milli(m.Ratios.Disk))
	}
	if e.err != nil {
		return nil, e.err
	}
	return e.buf, nil
}

type encoder struct {
	buf []byte
	err error
}

func fieldName(name string, idx int) string {
	if idx < 0 {
		return name
	}
	return name + "[" + strconv.Itoa(idx) + "]"
}

func (e *encoder) append(name string, idx int, b []byte) {
	if e.err != nil {
		return
	}
	e.buf = append(e.buf, b...)
	if len(e.buf) > memberlist.MetaMaxSize {
		e.err = fmt.Errorf("encode meta field %s: encoding reaches %d bytes: %w",
			fieldName(name, idx), len(e.buf), ErrMetaTooLarge)
	}
}

func (e *encoder) uvarint(name string, v uint64) {
	e.append(name, -1, binary.AppendUvarint(nil, v))
}

func (e *encoder) str(name string, idx int, s string) {
	if e.err == nil && len(s) > MaxStringLen {
		e.err = fmt.Errorf("encode meta field %s: %d bytes: %w", fieldName(name, idx), len(s), ErrStringTooLong)
		return
	}
	e.append(name, idx, append(binary.AppendUvarint(nil, uint64(len(s))), s...))
}

// DecodeMeta parses the output of Meta.Encode, ignoring trailing fields and
// flag bits added by newer minor writers (see the wire format above).
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) == 0 {
		return m, fmt.Errorf("decode meta: empty: %w", ErrTruncatedMeta)
	}
	if len(b) > memberlist.MetaMaxSize {
		return m, fmt.Errorf("decode meta: %d bytes: %w", len(b), ErrMetaTooLarge)
	}
	if b[0] != metaVersion {
		return m, fmt.Errorf("decode meta: version %d, this build reads version %d: %w",
			b[0], metaVersion, ErrUnsupportedVersion)
	}
	d := decoder{buf: b[1:]}
	m.Role = Role(d.uvarint("role", math.MaxUint8))
	m.Zone = d.str("zone")
	if n := d.uvarint("aggregates", uint64(len(d.buf))); n > 0 {
		m.Aggregates = make([]string, 0, n)
		for range n {
			m.Aggregates = append(m.Aggregates, d.str("aggregates"))
		}
	}
	m.VTEP = d.addr("vtep")
	m.VCPUs = uint32(d.uvarint("vcpus", math.MaxUint32))
	m.RAMMiB = d.uvarint("ram_mib", math.MaxUint64)
	m.DiskGiB = d.uvarint("disk_gib", math.MaxUint64)
	m.AppliedEpoch = d.uvarint("applied_epoch", math.MaxUint64)
	m.APIAddr = d.str("api_addr")
	flags := d.uvarint("flags", math.MaxUint64)
	m.Drained = flags&flagDrained != 0
	m.leaving = flags&flagLeaving != 0
	if d.err == nil && len(d.buf) > 0 {
		m.Arch = d.str("arch")
		if n := d.uvarint("physnets", uint64(len(d.buf))); n > 0 {
			m.Physnets = make([]string, 0, n)
			for range n {
				m.Physnets = append(m.Physnets, d.str("physnets"))
			}
		}
	}
	if d.err == nil && len(d.buf) > 0 {
		m.Hypervisor = d.str("hypervisor")
	}
	if d.err == nil && len(d.buf) > 0 {
		if n := d.uvarint("storage", uint64(len(d.buf))); n > 0 {
			m.Storage = make([]string, 0, n)
			for range n {
				m.Storage = append(m.Storage, d.str("storage"))
			}
		}
	}
	if d.err == nil && len(d.buf) > 0 {
		maxMilli := uint64(computespec.MaxRatio * 1000)
		m.Ratios.VCPU = float64(d.uvarint("ratios", maxMilli)) / 1000
		m.Ratios.RAM = float64(d.uvarint("ratios", maxMilli)) / 1000
		m.Ratios.Disk = float64(d.uvarint("ratios", maxMilli)) / 1000
	}
	if d.err != nil {
		return Meta{}, d.err
	}
	return m, nil
}

// milli is a ratio in thousandths, rounded (Validate bounds it).
func milli(r float64) uint64 { return uint64(math.Round(r * 1000)) }

type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail(name string, err error) {
	if d.err == nil {
		d.err = fmt.Errorf("decode meta field %s: %w", name, err)
	}
}

func (d *decoder) uvarint(name string, max uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	switch {
	case n == 0:
		d.fail(name, ErrTruncatedMeta)
		return 0
	case n < 0:
		d.fail(name, errors.New("varint overflows 64 bits"))
		return 0
	case v > max:
		d.fail(name, fmt.Errorf("value %d above maximum %d", v, max))
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) bytes(name string, n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if uint64(len(d.buf)) < n {
		d.fail(name, ErrTruncatedMeta)
		return nil
	}
	b := d.buf[:n]
	d.buf = d.buf[n:]
	return b
}

func (d *decoder) str(name string) string {
	n := d.uvarint(name, MaxStringLen)
	return string(d.bytes(name, n))
}

func (d *decoder) addr(name string) netip.Addr {
	if d.err != nil {
		return netip.Addr{}
	}
	if len(d.buf) == 0 {
		d.fail(name, ErrTruncatedMeta)
		return netip.Addr{}
	}
	n := d.buf[0]
	d.buf = d.buf[1:]
	switch n {
	case 0:
		return netip.Addr{}
	case 4, 16:
		a, _ := netip.AddrFromSlice(d.bytes(name, uint64(n)))
		return a
	}
	d.fail(name, fmt.Errorf("address length %d, want 0, 4 or 16", n))
	return netip.Addr{}
}
