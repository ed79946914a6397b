package computespec

import "fmt"

// Catalog is the flavors and images instances may name.
type Catalog struct {
	Flavors map[string]Flavor // by name
	Images  map[string]Image  // by ID
}

// Resolve validates in and returns the flavor and image it names. An
// unknown flavor or image is a *FieldError on instance.flavor or
// instance.image.
func (c Catalog) Resolve(in Instance) (Flavor, Image, error) {
	if err := in.Validate(); err != nil {
		return Flavor{}, Image{}, err
	}
	f, ok := c.Flavors[in.Flavor]
	if !ok {
		return Flavor{}, Image{}, fieldErr("instance.flavor", "unknown flavor %q", in.Flavor)
	}
	if err := f.Validate(); err != nil {
		return Flavor{}, Image{}, fmt.Errorf("instance.flavor %q: %w", in.Flavor, err)
	}
	im, ok := c.Images[in.Image]
	if !ok {
		return Flavor{}, Image{}, fieldErr("instance.image", "unknown image %q", in.Image)
	}
	if err := im.Validate(); err != nil {
		return Flavor{}, Image{}, fmt.Errorf("instance.image %q: %w", in.Image, err)
	}
	return f, im, nil
}

// Fits returns nil when f fits into c, or a *FieldError on the first flavor
// field that does not.
func (c Capacity) Fits(f Flavor) error {
	switch {
	case f.VCPUs > c.VCPUs:
		return fieldErr("flavor.vcpus", "%d is over the host's %d", f.VCPUs, c.VCPUs)
	case f.RAMMiB > c.RAMMiB:
		return fieldErr("flavor.ram_mib", "%d MiB is over the host's %d MiB", f.RAMMiB, c.RAMMiB)
	case f.DiskGiB > c.DiskGiB:
		return fieldErr("flavor.disk_gib", "%d GiB is over the host's %d GiB", f.DiskGiB, c.DiskGiB)
	}
	return nil
}

// Sub returns c less o, never below zero.
func (c Capacity) Sub(o Capacity) Capacity {
	sub := func(a, b int) int { return max(a-b, 0) }
	return Capacity{VCPUs: sub(c.VCPUs, o.VCPUs), RAMMiB: sub(c.RAMMiB, o.RAMMiB), DiskGiB: sub(c.DiskGiB, o.DiskGiB)}
}

// Plus returns c plus o.
func (c Capacity) Plus(o Capacity) Capacity {
	return Capacity{VCPUs: c.VCPUs + o.VCPUs, RAMMiB: c.RAMMiB + o.RAMMiB, DiskGiB: c.DiskGiB + o.DiskGiB}
}

// Add returns c plus the flavor's resources.
func (c Capacity) Add(f Flavor) Capacity {
	return Capacity{VCPUs: c.VCPUs + f.VCPUs, RAMMiB: c.RAMMiB + f.RAMMiB, DiskGiB: c.DiskGiB + f.DiskGiB}
}
