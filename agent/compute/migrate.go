package compute

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/strata-infra/strata/pkg/computespec"
	"github.com/strata-infra/strata/pkg/storagespec"
)

// exportPool is the name of the libvirt pool through which a host lets the
// destination of a cold migration copy the instance's files.
func exportPool(id string) string { return "strata-out-" + id }

// depart is the source's part of a move: a live instance's domain is
// migrated to the peer's libvirtd (the call returns when the guest runs
// there, or the migration failed and it still runs here); a cold one is
// kept stopped with its files exported for the peer to copy. What is left
// here is deleted when the coordinator ends the move (the instance leaves
// this host's plan).
func (d *Driver) depart(ctx context.Context, in Instance, dom Domain, exists bool) error {
	if !exists {
		return nil // moved already, or never here
	}
	m, id := in.Migration, in.Spec.ID
	name := DomainName(d.cfg.DomainPrefix, id)
	if d.cfg.Migrator == nil {
		return errors.New("this host has no migrator configured (compute.migration_uri)")
	}
	if !m.Live {
		if dom.State != computespec.PowerStopped {
			if err := d.stop(ctx, name); err != nil {
				return err
			}
		}
		return d.cfg.Migrator.Export(ctx, exportPool(id), filesOf(d.cfg.StateDir, id).Dir)
	}
	if dom.State != computespec.PowerRunning && dom.State != computespec.PowerPaused {
		return fmt.Errorf("%sthe guest is %s here, not running", computespec.LiveMigrationFailed, dom.State)
	}
	for _, v := range in.Spec.Volumes {
		if fe := storagespec.CheckLiveMigration("instance.volumes", v.Serial, v.KRBD != nil); fe != nil {
			return fmt.Errorf("%s%w", computespec.LiveMigrationFailed, fe)
		}
	}
	log := d.log.With("instance", id, "to", m.Peer)
	log.Info("live migration starting")
	err := d.cfg.Migrator.MigrateLive(ctx, name, m.Peer, func(p Progress) {
		log.Info("live migration progress", "progress", p.String())
	})
	if err != nil {
		// Both hosts act on the move as they see it: the destination
		// defines the Ceph secret and writes the seed ISO, and the source
		// may start before that. Such a refusal is tried again (on the
		// resource's backoff), a few times, before the move fails.
		if destinationNotReady(err) && d.tooEarly(id) <= maxTooEarly {
			log.Info("live migration refused: the destination has not prepared the guest yet; trying again", "err", err)
			return fmt.Errorf("the destination %s has not prepared the guest yet: %w", m.Peer, err)
		}
		d.migrated(id)
		return fmt.Errorf("%s%w", computespec.LiveMigrationFailed, err)
	}
	d.migrated(id)
	log.Info("live migration done: the guest runs on the peer")
	return nil
}

// maxTooEarly is how many refusals of a destination not prepared yet a
// live migration is tried again after.
const maxTooEarly = 5

// destinationNotReady reports whether the destination's libvirtd refused
// the guest for what its agent prepares when it sees the move: the Ceph
// secret, or the instance's files.
func destinationNotReady(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "Secret not found") || strings.Contains(msg, "Cannot access storage file")
}

// tooEarly counts one more early refusal of instance id's live migration.
func (d *Driver) tooEarly(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.early == nil {
		d.early = map[string]int{}
	}
	d.early[id]++
	return d.early[id]
}

func (d *Driver) migrated(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.early, id)
}

// arrive prepares the destination of a move before its domain exists: a
// live instance's files (the seed ISO qemu opens when the guest arrives;
// the domain itself comes from the peer), a cold one's local disk copied
// from the peer (a root disk on RBD stays where it is). It reports whether
// ensure should go on and define the domain.
func (d *Driver) arrive(ctx context.Context, in Instance) (bool, error) {
	m, f := in.Migration, filesOf(d.cfg.StateDir, in.Spec.ID)
	if err := os.MkdirAll(f.Dir, 0o755); err != nil {
		return false, fmt.Errorf("instance dir: %w", err)
	}
	if m.Live {
		if v := d.cfg.Volumes; v != nil && (in.Spec.Root != nil || len(in.Spec.Volumes) > 0) {
			if err := v.Ready(ctx); err != nil {
				return false, err
			}
		}
		return false, writeSeed(f.Seed, seedFiles(in))
	}
	if in.Spec.Root != nil {
		return true, nil
	}
	if _, err := os.Stat(f.Disk); err == nil {
		return true, nil // copied already
	}
	if d.cfg.Migrator == nil {
		return false, errors.New("this host has no migrator configured (compute.migration_uri): it cannot copy the disk")
	}
	d.log.Info("copying the disk of a migrating instance", "instance", in.Spec.ID, "from", m.Peer)
	if err := d.cfg.Migrator.Fetch(ctx, m.Peer, exportPool(in.Spec.ID), "disk", f.Disk); err != nil {
		return false, fmt.Errorf("copy the disk from %s: %w", m.Peer, err)
	}
	return true, nil
}
