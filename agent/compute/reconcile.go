package compute

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/strata-infra/strata/pkg/computespec"
	"github.com/strata-infra/strata/pkg/netnsutil"
)

// parallelEnsures bounds how many instances Set converges at once.
const parallelEnsures = 4

// Set converges Strata's domains to desired. An invalid instance (bad spec,
// or more than the host's free capacity) is refused before anything of it
// is made, and reported in its status and the returned error; the others
// still converge. Strata's domains not in desired are deleted with their
// taps, seed ISO, disk and console log.
func (d *Driver) Set(ctx context.Context, desired []Instance) error {
	d.setMu.Lock()
	defer d.setMu.Unlock()
	doms, err := d.hv.Domains(ctx)
	if err != nil {
		d.record(nil, err)
		return fmt.Errorf("compute: %w", err)
	}
	owned := d.owned(doms)
	want := map[string]Instance{}
	var staying, leaving []Instance
	for _, in := range desired {
		want[in.Spec.ID] = in
		if m := in.Migration; m != nil && m.Out {
			leaving = append(leaving, in)
		} else {
			staying = append(staying, in)
		}
	}
	valid, errs := d.admit(staying, owned)
	var setErrs []error
	// gone are the instances whose volumes this host lets go: a cold move
	// stopped here, which the destination attaches once this host has
	// flushed their caches and unmapped them (it cannot claim them before).
	gone := map[string]bool{}
	for _, in := range leaving {
		dom, exists := owned[in.Spec.ID]
		if err := d.depart(ctx, in, dom, exists); err != nil {
			errs[in.Spec.ID] = err.Error()
			setErrs = append(setErrs, fmt.Errorf("instance %q: %w", in.Spec.ID, err))
		} else if !in.Migration.Live {
			gone[in.Spec.ID] = true
		}
	}
	for _, in := range desired {
		if msg := errs[in.Spec.ID]; msg != "" {
			setErrs = append(setErrs, fmt.Errorf("instance %q: %s", in.Spec.ID, msg))
		}
	}
	var todo []Instance
	for _, in := range valid {
		if _, exists := owned[in.Spec.ID]; in.Migration != nil && !exists {
			if goOn, err := d.arrive(ctx, in); err != nil || !goOn {
				if err != nil {
					errs[in.Spec.ID] = err.Error()
					setErrs = append(setErrs, fmt.Errorf("instance %q: %w", in.Spec.ID, err))
				}
				continue
			}
		}
		todo = append(todo, in)
	}
	// Each instance converges on its own, side by side: a guest's start
	// takes seconds (qemu under TCG), and instances restarted together
	// (a dead host's, evacuated here) must not queue behind each other.
	done := make([]error, len(todo))
	slots := make(chan struct{}, parallelEnsures)
	var wg sync.WaitGroup
	for i, in := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			dom, exists := owned[in.Spec.ID]
			err := d.ensure(ctx, in, dom, exists)
			if err == nil {
				// Apart from ensure: a volume that cannot be attached yet (held
				// by another host) never removes a new instance.
				err = d.attachVolumes(ctx, in)
			}
			done[i] = err
		}()
	}
	wg.Wait()
	for i, in := range todo {
		if err := done[i]; err != nil {
			errs[in.Spec.ID] = err.Error()
			setErrs = append(setErrs, fmt.Errorf("instance %q: %w", in.Spec.ID, err))
		}
	}
	for id, dom := range owned {
		if _, ok := want[id]; ok {
			continue
		}
		if err := d.remove(ctx, id, dom); err != nil {
			setErrs = append(setErrs, fmt.Errorf("delete instance %q: %w", id, err))
		}
	}
	if err := d.release(ctx, desired, gone); err != nil {
		setErrs = append(setErrs, err)
	}
	d.mu.Lock()
	d.desired, d.errs = want, errs
	d.mu.Unlock()
	doms, err = d.hv.Domains(ctx)
	d.record(doms, err)
	return errors.Join(setErrs...)
}

// admit validates desired in order and keeps those that fit into the host's
// capacity; it returns the rest's errors by instance ID. An instance that
// already has a domain is kept even when it no longer validates: Set never
// deletes an instance because of bad input.
func (d *Driver) admit(desired []Instance, owned map[string]Domain) ([]Instance, map[string]string) {
	errs := map[string]string{}
	var ok []Instance
	var used computespec.Capacity
	seen := map[string]bool{}
	for _, in := range desired {
		err := validate(in)
		if err == nil && seen[in.Spec.ID] {
			err = fmt.Errorf("instance.id: %q appears twice", in.Spec.ID)
		}
		if err == nil {
			// The scheduler's rule at the ratios this host announces.
			err = d.capacity.FitsAt(used, in.Flavor.Resources(), d.ratios)
		}
		seen[in.Spec.ID] = true
		if err != nil {
			errs[in.Spec.ID] = err.Error()
			continue
		}
		used = used.Add(in.Flavor)
		ok = append(ok, in)
	}
	return ok, errs
}

func validate(in Instance) error {
	if err := in.Spec.Validate(); err != nil {
		return err
	}
	if err := in.Flavor.Validate(); err != nil {
		return err
	}
	if in.Flavor.Name != in.Spec.Flavor {
		return &computespec.FieldError{Field: "instance.flavor", Msg: fmt.Sprintf("unknown flavor %q", in.Spec.Flavor)}
	}
	if in.Spec.Root != nil {
		return nil // boots from an RBD volume, not from a file
	}
	if err := in.Image.Validate(); err != nil {
		return err
	}
	if in.Image.ID != in.Spec.Image {
		return &computespec.FieldError{Field: "instance.image", Msg: fmt.Sprintf("unknown image %q", in.Spec.Image)}
	}
	if _, err := os.Stat(in.Image.Path); err != nil {
		return &computespec.FieldError{Field: "image.path", Msg: err.Error()}
	}
	return nil
}

// ensure makes one instance what it should be. A new instance that fails
// half-way is removed again, so that a failed create leaves nothing.
func (d *Driver) ensure(ctx context.Context, in Instance, dom Domain, exists bool) (err error) {
	id := in.Spec.ID
	name := DomainName(d.cfg.DomainPrefix, id)
	f := filesOf(d.cfg.StateDir, id)
	if !exists {
		defer func() {
			var wait *waitError
			if err != nil && !errors.As(err, &wait) {
				err = errors.Join(err, d.remove(ctx, id, Domain{Name: name}))
			}
		}()
	}
	hash := configHash(in, d.domType)
	if m, _ := parseMeta(dom.Metadata); !exists || m.Hash != hash {
		if err := d.define(ctx, in, name, f); err != nil {
			return err
		}
		if !exists {
			dom.State = computespec.PowerStopped
			// A new instance starts with its reboot count applied.
			if err := writeCount(f.Reboots, in.Spec.Reboots); err != nil {
				return err
			}
		}
	}
	switch {
	case in.Spec.Power == computespec.PowerRunning && dom.State != computespec.PowerRunning && dom.State != computespec.PowerPaused:
		if dom.State == computespec.PowerCrashed {
			if err := d.hv.Do(ctx, name, ActDestroy); err != nil {
				return err
			}
		}
		if r := in.Spec.Root; r != nil {
			if d.cfg.Volumes == nil {
				return errNoCeph
			}
			if err := d.cfg.Volumes.Claim(ctx, *r); err != nil {
				// Not a failed build: the storage controller has not made
				// the root clone yet, or another host's qemu still has it
				// open. The domain stays defined and the start is retried.
				return &waitError{fmt.Errorf("root volume: %w", err)}
			}
		}
		d.log.Info("starting instance", "instance", id)
		return d.hv.Do(ctx, name, ActStart)
	case in.Spec.Power == computespec.PowerStopped && dom.State != computespec.PowerStopped:
		return d.stop(ctx, name)
	case in.Spec.Power == computespec.PowerRunning && in.Spec.Reboots > readCount(f.Reboots):
		d.log.Info("rebooting instance", "instance", id)
		if err := d.hv.Do(ctx, name, ActReset); err != nil {
			return err
		}
		return writeCount(f.Reboots, in.Spec.Reboots)
	}
	return nil
}

// define writes the disk (once) and the seed ISO, then (re)defines the domain.
func (d *Driver) define(ctx context.Context, in Instance, name string, f instanceFiles) error {
	if err := os.MkdirAll(f.Dir, 0o755); err != nil {
		return fmt.Errorf("instance dir: %w", err)
	}
	var root *libvirtxml.DomainDisk
	if r := in.Spec.Root; r != nil {
		if d.cfg.Volumes == nil {
			return errNoCeph
		}
		disk := d.cfg.Volumes.RootDisk(*r)
		root = &disk
	} else if err := ensureDisk(ctx, in, f.Disk); err != nil {
		return err
	}
	if err := writeSeed(f.Seed, seedFiles(in)); err != nil {
		return err
	}
	x, err := domainXML(in, name, d.domType, f, root)
	if err != nil {
		return err
	}
	d.log.Info("defining instance", "instance", in.Spec.ID, "domain", name)
	return d.hv.Define(ctx, x)
}

// waitError is a step that cannot happen yet (a volume not there or held
// elsewhere): a new instance keeps its defined domain, so its host
// reports it stopped, not a failed build, and the next pass retries.
type waitError struct{ err error }

func (e *waitError) Error() string { return e.err.Error() }
func (e *waitError) Unwrap() error { return e.err }

var errNoCeph = errors.New("this host has no Ceph configured (storage.ceph): it cannot attach RBD volumes")

// attachVolumes makes the instance's attached volumes what the plan says
// (hot-plugged while it runs) and tells a running guest when one grew.
func (d *Driver) attachVolumes(ctx context.Context, in Instance) error {
	vols := d.cfg.Volumes
	if vols == nil {
		if len(in.Spec.Volumes) > 0 {
			return errNoCeph
		}
		return nil
	}
	name := DomainName(d.cfg.DomainPrefix, in.Spec.ID)
	if err := vols.Set(ctx, name, in.Spec.Volumes); err != nil {
		return fmt.Errorf("volumes: %w", err)
	}
	grow := append([]computespec.Volume{}, in.Spec.Volumes...)
	if in.Spec.Root != nil {
		grow = append(grow, *in.Spec.Root)
	}
	var errs []error
	for _, v := range grow {
		if v.SizeBytes > 0 {
			if err := vols.Grow(ctx, name, v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// release lets the host-side devices of volumes go once no desired
// instance has them (their domains are gone or detached them above), nor
// an instance that left (gone: stopped here for a cold move).
func (d *Driver) release(ctx context.Context, desired []Instance, gone map[string]bool) error {
	if d.cfg.Volumes == nil {
		return nil
	}
	var keep []computespec.Volume
	for _, in := range desired {
		if gone[in.Spec.ID] {
			continue
		}
		keep = append(keep, in.Spec.Volumes...)
		if in.Spec.Root != nil {
			keep = append(keep, *in.Spec.Root)
		}
	}
	if err := d.cfg.Volumes.Release(ctx, keep); err != nil {
		return fmt.Errorf("volumes: %w", err)
	}
	return nil
}

// stop presses the ACPI button and pulls the plug after ShutdownTimeout.
func (d *Driver) stop(ctx context.Context, name string) error {
	if err := d.hv.Do(ctx, name, ActShutdown); err == nil {
		deadline := time.Now().Add(d.cfg.ShutdownTimeout)
		for time.Now().Before(deadline) {
			if st, err := d.stateOf(ctx, name); err != nil || st == computespec.PowerStopped {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return d.hv.Do(ctx, name, ActDestroy)
}

func (d *Driver) stateOf(ctx context.Context, name string) (computespec.PowerState, error) {
	doms, err := d.hv.Domains(ctx)
	if err != nil {
		return "", err
	}
	for _, dom := range doms {
		if dom.Name == name {
			return dom.State, nil
		}
	}
	return computespec.PowerMissing, nil
}

// remove destroys and undefines a Strata domain and removes its taps and
// files. Everything missing already counts as removed.
func (d *Driver) remove(ctx context.Context, id string, dom Domain) error {
	d.log.Info("deleting instance", "instance", id, "domain", dom.Name)
	var errs []error
	if err := d.hv.Do(ctx, dom.Name, ActDestroy); err != nil {
		errs = append(errs, err)
	}
	if err := d.hv.Do(ctx, dom.Name, ActUndefine); err != nil {
		errs = append(errs, err)
	}
	if mg := d.cfg.Migrator; mg != nil {
		if err := mg.Unexport(ctx, exportPool(id)); err != nil {
			errs = append(errs, err)
		}
	}
	m, _ := parseMeta(dom.Metadata)
	for _, tap := range m.Taps {
		if err := d.removeTap(tap); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(filesOf(d.cfg.StateDir, id).Dir); err != nil {
		errs = append(errs, fmt.Errorf("instance files: %w", err))
	}
	return errors.Join(errs...)
}

// removeTap deletes a tap that qemu left behind (libvirt removes it when
// qemu exits normally). Only a tun device with Strata's tap prefix.
func (d *Driver) removeTap(name string) error {
	if !strings.HasPrefix(name, TapPrefix) {
		return nil
	}
	h, err := netnsutil.Handle(d.cfg.NetNS)
	if err != nil {
		return fmt.Errorf("remove tap %q: %w", name, err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil || l.Type() != "tuntap" {
		return nil // gone, or not a tap
	}
	if err := h.LinkDel(l); err != nil {
		return fmt.Errorf("remove tap %q: %w", name, err)
	}
	return nil
}

func readCount(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n
}

func writeCount(path string, n uint64) error {
	if err := os.WriteFile(path, []byte(strconv.FormatUint(n, 10)+"\n"), 0o644); err != nil {
		return fmt.Errorf("reboot count: %w", err)
	}
	return nil
}
