package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/computespec"
)

// InstanceKind is a virtual machine of a project. Admission resolves its
// flavor and image, has the scheduler place it (an admin may name the
// host; a stopped one may be resized or migrated), makes a port
// on each of its networks and binds its own ports to the host, all in the
// commit that creates it. Its plan goes only to its host.
//
// The port kind of reg, registered before, learns to refuse deleting a
// port an instance uses (kinds compose their delete checks here, so that
// port.go need not know about instances).
func InstanceKind(reg *Registry) *Kind {
	if pk, ok := reg.Get("port"); ok {
		next := pk.BeforeDelete
		pk.BeforeDelete = func(a *Admission, r api.Resource) error {
			if err := portInUse(a, r); err != nil {
				return err
			}
			if next != nil {
				return next(a, r)
			}
			return nil
		}
	}
	str := map[string]any{"type": "string"}
	strs := map[string]any{"type": "array", "items": str}
	return &Kind{
		Name: "instance", Plural: "instances", Scope: Project, Order: 50,
		NewSpec:      func() any { return &api.InstanceSpec{} },
		Admit:        admitInstance,
		Assigned:     []string{"host", "network_ports", "root_volume", "reboots", "starts", "build_failures", "migration"},
		BeforeDelete: deleteInstance,
		// A migrating instance is in the plans of both hosts.
		OnHost: func(r api.Resource, host string) bool {
			s := decode[api.InstanceSpec](r)
			return s.Host == host || (s.Migration != nil && s.Migration.Source == host)
		},
		Schema: map[string]any{
			"type": "object", "additionalProperties": false, "required": []string{"flavor"},
			"properties": map[string]any{
				"flavor": str, "image": str, "networks": strs, "ports": strs,
				"boot_volume": str, "root_volume": str,
				"volumes":   map[string]any{"type": "array", "items": str, "maxItems": MaxInstanceVolumes},
				"user_data": map[string]any{"type": "string", "maxLength": computespec.MaxUserData},
				"ssh_key":   str,
				"power":     map[string]any{"type": "string", "enum": []string{"", api.PowerRunning, api.PowerStopped}},
				"reboots":   map[string]any{"type": "integer", "minimum": 0},
				"starts":    map[string]any{"type": "integer", "minimum": 0},
				"host":      str, "network_ports": strs,
				"zone": str, "group": str, "migrations": map[string]any{"type": "integer", "minimum": 0},
				"live_migrations": map[string]any{"type": "integer", "minimum": 0},
				"build_failures":  strs,
				"migration": map[string]any{"type": "object", "additionalProperties": false,
					"properties": map[string]any{"source": str, "live": map[string]any{"type": "boolean"}}},
				"evacuations":      map[string]any{"type": "array", "items": map[string]any{"type": "object"}},
				"accept_data_loss": map[string]any{"type": "boolean"},
			},
		},
	}
}

func admitInstance(a *Admission, r *api.Resource, spec any) error {
	s := spec.(*api.InstanceSpec)
	var prev *api.InstanceSpec
	if a.Prev != nil {
		p := decode[api.InstanceSpec](*a.Prev)
		prev = &p
		if err := keepImmutable(s, p); err != nil {
			return err
		}
		if s.BuildFailures == nil {
			s.BuildFailures = p.BuildFailures
		}
		if !a.System && !slices.Equal(s.BuildFailures, p.BuildFailures) {
			return api.Fieldf("spec.build_failures", "is set by the coordinator")
		}
		if s.Migration == nil {
			s.Migration = p.Migration
		}
		if !a.System && !sameMigration(s.Migration, p.Migration) {
			return api.Fieldf("spec.migration", "is set by the coordinator")
		}
		if s.Evacuations == nil {
			s.Evacuations = p.Evacuations
		}
		if !a.System && !slices.EqualFunc(s.Evacuations, p.Evacuations, func(x, y api.Evacuation) bool { return x.From == y.From && x.Fence == y.Fence && x.To == y.To }) {
			return api.Fieldf("spec.evacuations", "is set by the coordinator")
		}
		if s.AcceptDataLoss && !p.AcceptDataLoss && !a.Admin {
			return &api.Error{Code: http.StatusForbidden, Field: "spec.accept_data_loss", Message: "only an admin may accept the loss of cached writes"}
		}
	} else if len(s.NetworkPorts) > 0 {
		return api.Fieldf("spec.network_ports", "is set by the coordinator")
	} else if len(s.BuildFailures) > 0 && !a.System {
		return api.Fieldf("spec.build_failures", "is set by the coordinator")
	} else if len(s.Evacuations) > 0 {
		return api.Fieldf("spec.evacuations", "is set by the coordinator")
	} else if s.RootVolume != "" {
		return api.Fieldf("spec.root_volume", "is set by the coordinator")
	} else if s.Migration != nil {
		return api.Fieldf("spec.migration", "is set by the coordinator")
	}
	if s.Power == "" {
		// The default, even over a stopped instance: a spec is applied as
		// given, never mixed with the stored one.
		s.Power = api.PowerRunning
	}
	fl, err := getFlavor(a.Tx, s.Flavor)
	if err != nil {
		return err
	}
	var img api.ImageSpec
	switch {
	case s.Image != "" && s.BootVolume != "":
		return api.Fieldf("spec.boot_volume", "image and boot_volume are alternatives: set one")
	case s.BootVolume != "":
	default:
		if _, err := getImage(a.Tx, s.Image); err != nil {
			return err
		}
		imgRes, err := a.Tx.Get(api.Key{Kind: "image", Name: s.Image})
		if err != nil {
			return err
		}
		img = decode[api.ImageSpec](imgRes)
	}
	if err := checkInstanceVolumes(a, r, s); err != nil {
		return err
	}
	cs := computespec.Instance{ID: api.InstanceID(r.Project, r.Name), Name: r.Name, Flavor: s.Flavor, Image: s.Image,
		UserData: []byte(s.UserData), SSHKey: s.SSHKey, Power: computespec.PowerState(s.Power)}
	if s.BootVolume != "" {
		cs.Root = &computespec.Volume{Image: s.BootVolume}
	}
	if err := specField(cs.Validate()); err != nil {
		return err
	}
	if err := noDuplicates("spec.networks", s.Networks); err != nil {
		return err
	}
	if err := noDuplicates("spec.ports", s.Ports); err != nil {
		return err
	}
	if s.Group != "" {
		if _, err := a.Tx.Get(api.Key{Kind: "servergroup", Project: r.Project, Name: s.Group}); errors.Is(err, store.ErrNotFound) {
			return api.Fieldf("spec.group", "server group %q does not exist in project %q", s.Group, r.Project)
		} else if err != nil {
			return err
		}
	}
	if prev != nil {
		if s.Host == prev.Host && s.Migrations == prev.Migrations {
			// Volumes hot-plugged where it runs: that host must reach them.
			if err := checkHostStorage(a, r, s, prev); err != nil {
				return err
			}
		}
		return move(a, r, s, *prev, fl, img) // plugged when it was created
	}
	if s.Host != "" && !a.Admin {
		return &api.Error{Code: http.StatusForbidden, Field: "spec.host", Message: "only an admin may choose the host"}
	}
	if s.Host, err = schedule(a, r, s, fl, img, s.Host, "", ""); err != nil {
		return err
	}
	if err := bindPorts(a, r, s); err != nil {
		return err
	}
	if err := makeNetworkPorts(a, r, s); err != nil {
		return err
	}
	if img.Pool != "" {
		return makeRootVolume(a, r, s, fl, img)
	}
	return nil
}

// keepImmutable carries over what an update may not change (and what the
// coordinator filled in), and keeps the counters from going down.
func keepImmutable(s *api.InstanceSpec, p api.InstanceSpec) error {
	same := func(field string, ok bool) error {
		if !ok {
			return api.Fieldf("spec."+field, "cannot change; make a new instance")
		}
		return nil
	}
	if s.Host == "" {
		s.Host = p.Host
	}
	if s.NetworkPorts == nil {
		s.NetworkPorts = p.NetworkPorts
	}
	if s.RootVolume == "" {
		s.RootVolume = p.RootVolume
	}
	for _, err := range []error{
		same("image", s.Image == p.Image), same("zone", s.Zone == p.Zone), same("group", s.Group == p.Group),
		same("boot_volume", s.BootVolume == p.BootVolume), same("root_volume", s.RootVolume == p.RootVolume),
		same("networks", slices.Equal(s.Networks, p.Networks)), same("ports", slices.Equal(s.Ports, p.Ports)),
		same("network_ports", slices.Equal(s.NetworkPorts, p.NetworkPorts)),
	} {
		if err != nil {
			return err
		}
	}
	counter := func(field string, v *uint64, old uint64) error {
		switch {
		case *v == 0:
			*v = old
		case *v < old:
			return api.Fieldf("spec."+field, "cannot go down from %d to %d", old, *v)
		}
		return nil
	}
	if err := counter("reboots", &s.Reboots, p.Reboots); err != nil {
		return err
	}
	if err := counter("migrations", &s.Migrations, p.Migrations); err != nil {
		return err
	}
	if err := counter("live_migrations", &s.LiveMigrations, p.LiveMigrations); err != nil {
		return err
	}
	return counter("starts", &s.Starts, p.Starts)
}

// move resizes (new flavor) or migrates (more migrations or live
// migrations, or an admin naming another host) an instance through the
// scheduler. A cold move (resize, migration) needs the instance stopped
// and rebinds its ports to the new host in the same commit; a live one
// needs it running with its root disk on RBD, and keeps its ports where
// the guest runs until the move is done. Either way the instance keeps
// its disk: a move to another host sets Migration (see
// api.InstanceMigration), and nothing else moves it until that is done.
func move(a *Admission, r *api.Resource, s *api.InstanceSpec, p api.InstanceSpec, fl computespec.Flavor, img api.ImageSpec) error {
	if len(s.Evacuations) > len(p.Evacuations) {
		return evacuate(a, r, s, p, fl, img)
	}
	if len(s.BuildFailures) > len(p.BuildFailures) {
		return rebuildElsewhere(a, r, s, p, fl, img)
	}
	resize, migrate, named := s.Flavor != p.Flavor, s.Migrations > p.Migrations, s.Host != p.Host
	live := s.LiveMigrations > p.LiveMigrations
	if !resize && !migrate && !named && !live {
		return nil
	}
	field := "spec.flavor"
	switch {
	case live:
		field = "spec.live_migrations"
	case named:
		field = "spec.host"
	case migrate:
		field = "spec.migrations"
	}
	if m := p.Migration; m != nil {
		return &api.Error{Code: http.StatusConflict, Field: field,
			Message: fmt.Sprintf("instance %s/%s is migrating from %s to %s; wait until it is done", r.Project, r.Name, m.Source, p.Host)}
	}
	if err := movable(a, s, p, field, live, resize); err != nil {
		return err
	}
	if live {
		if err := liveMovableVolumes(a, r.Project, s, field); err != nil {
			return err
		}
	}
	if resize {
		old, err := getFlavor(a.Tx, p.Flavor)
		if err == nil && fl.DiskGiB < old.DiskGiB {
			// The host grows a disk, never shrinks one: it holds the guest's data.
			return api.Fieldf("spec.flavor", "flavor %q has a %d GiB disk, smaller than the %d GiB of %q: a disk never shrinks",
				s.Flavor, fl.DiskGiB, old.DiskGiB, p.Flavor)
		}
	}
	asked, avoid := "", ""
	switch {
	case named:
		asked = s.Host
	case migrate, live:
		avoid = p.Host
	}
	host, err := schedule(a, r, s, fl, img, asked, avoid, "")
	if err != nil {
		return err
	}
	s.Host = host
	if host == p.Host {
		return nil // a resize in place
	}
	s.Migration = &api.InstanceMigration{Source: p.Host, Live: live}
	if live {
		return nil // the ports follow when the guest has moved
	}
	return rebindPorts(a, r, s, p.Host)
}

// movable refuses a move the instance's state does not allow.
func movable(a *Admission, s *api.InstanceSpec, p api.InstanceSpec, field string, live, resize bool) error {
	if s.Host != p.Host && !a.Admin {
		return &api.Error{Code: http.StatusForbidden, Field: "spec.host", Message: "only an admin may choose the host"}
	}
	if !live {
		if p.Power != api.PowerStopped || s.Power != api.PowerStopped {
			return api.Fieldf(field, "can change only while the instance is stopped; stop it first (or migrate it live)")
		}
		return nil
	}
	switch {
	case resize:
		return api.Fieldf("spec.flavor", "cannot change in a live migration; resize a stopped instance")
	case p.Power != api.PowerRunning || s.Power != api.PowerRunning:
		return api.Fieldf(field, "a live migration needs the instance running; migrate a stopped one cold")
	case s.RootVolume == "" && s.BootVolume == "":
		return api.Fieldf(field, "a live migration needs the root disk on RBD (an image in Ceph, or a boot volume); this instance's disk is local: stop it and migrate it cold")
	}
	return nil
}

func sameMigration(a, b *api.InstanceMigration) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// rebuildElsewhere moves an instance whose build failed on its host (the
// coordinator added that host to BuildFailures) to another host, never
// one where it failed before, with the same scheduler. After
// MaxBuildAttempts hosts, or when no other host can take it, it stays
// where it is (the host keeps retrying) and its placement status says why.
func rebuildElsewhere(a *Admission, r *api.Resource, s *api.InstanceSpec, p api.InstanceSpec, fl computespec.Flavor, img api.ImageSpec) error {
	failed := strings.Join(s.BuildFailures, ", ")
	if len(s.BuildFailures) >= api.MaxBuildAttempts {
		a.Tx.SetPlacement(r.Key(), api.PlacementStatus{State: api.PlacementRefused, Host: s.Host,
			Message: fmt.Sprintf("build failed on %d hosts (%s); not moved again, %s keeps retrying", len(s.BuildFailures), failed, s.Host)})
		return nil
	}
	host, err := schedule(a, r, s, fl, img, "", "", "build failed on "+failed+"; ")
	var ae *api.Error
	var fe *api.FieldError
	if errors.As(err, &ae) || errors.As(err, &fe) {
		// No other host: schedule kept the refusal as the placement
		// status; the commit still records the failure.
		return nil
	}
	if err != nil {
		return err
	}
	s.Host = host
	return rebindPorts(a, r, s, p.Host)
}

// rebindPorts binds the instance's ports to its new host.
func rebindPorts(a *Admission, r *api.Resource, s *api.InstanceSpec, oldHost string) error {
	host := s.Host
	if host == oldHost {
		return nil
	}
	for _, name := range append(slices.Clone(s.Ports), s.NetworkPorts...) {
		pr, err := a.Tx.Get(api.Key{Kind: "port", Project: r.Project, Name: name})
		if err != nil {
			return fmt.Errorf("port %q of the instance: %w", name, err)
		}
		ps := decode[api.PortSpec](pr)
		ps.Host = host
		if err := putSpec(a.Tx, pr, &ps); err != nil {
			return err
		}
	}
	return nil
}

func noDuplicates(field string, names []string) error {
	seen := map[string]bool{}
	for i, n := range names {
		if seen[n] {
			return api.Fieldf(fmt.Sprintf("%s[%d]", field, i), "%q is listed twice", n)
		}
		seen[n] = true
	}
	return nil
}

func getFlavor(tx *store.Tx, name string) (computespec.Flavor, error) {
	if name == "" {
		return computespec.Flavor{}, api.Fieldf("spec.flavor", "must name a flavor")
	}
	r, err := tx.Get(api.Key{Kind: "flavor", Name: name})
	if errors.Is(err, store.ErrNotFound) {
		return computespec.Flavor{}, api.Fieldf("spec.flavor", "unknown flavor %q", name)
	}
	if err != nil {
		return computespec.Flavor{}, err
	}
	return flavorOf(name, decode[api.FlavorSpec](r)), nil
}

func getImage(tx *store.Tx, name string) (computespec.Image, error) {
	if name == "" {
		return computespec.Image{}, api.Fieldf("spec.image", "must name an image")
	}
	r, err := tx.Get(api.Key{Kind: "image", Name: name})
	if errors.Is(err, store.ErrNotFound) {
		return computespec.Image{}, api.Fieldf("spec.image", "unknown image %q", name)
	}
	if err != nil {
		return computespec.Image{}, err
	}
	return imageOf(name, decode[api.ImageSpec](r)), nil
}

// NetworkPortName is the name of the port an instance gets on a network.
func NetworkPortName(instance, network string) string {
	n := instance + "-" + network
	if len(n) <= api.MaxNameLen {
		return n
	}
	sum := sha256.Sum256([]byte(n))
	return strings.TrimRight(n[:api.MaxNameLen-9], "-") + "-" + hex.EncodeToString(sum[:])[:8]
}

// makeNetworkPorts makes the instance's port on each of its networks, with
// the port kind's own admission (MAC and addresses from IPAM).
func makeNetworkPorts(a *Admission, r *api.Resource, s *api.InstanceSpec) error {
	s.NetworkPorts = nil
	for i, nw := range s.Networks {
		field := fmt.Sprintf("spec.networks[%d]", i)
		name := NetworkPortName(r.Name, nw)
		key := api.Key{Kind: "port", Project: r.Project, Name: name}
		if _, err := a.Tx.Get(key); err == nil {
			return &api.Error{Code: http.StatusConflict, Field: field, Message: fmt.Sprintf("port %q exists already", name)}
		}
		ps := &api.PortSpec{Network: nw, Host: s.Host, Owner: api.PortOwnerCompute, DNSName: r.Name}
		pa := *a
		pa.Prev = nil
		pr := api.Resource{Kind: "port", Project: r.Project, Name: name}
		if err := admitPort(&pa, &pr, ps); err != nil {
			var fe *api.FieldError
			if errors.As(err, &fe) && fe.Field == "spec.network" {
				return api.Fieldf(field, "%s", fe.Message)
			}
			return fmt.Errorf("port on network %q: %w", nw, err)
		}
		if err := putSpec(a.Tx, pr, ps); err != nil {
			return err
		}
		s.NetworkPorts = append(s.NetworkPorts, name)
	}
	return nil
}

// bindPorts binds the instance's own ports to its host, owner "compute".
func bindPorts(a *Admission, r *api.Resource, s *api.InstanceSpec) error {
	for i, name := range s.Ports {
		field := fmt.Sprintf("spec.ports[%d]", i)
		pr, err := a.Tx.Get(api.Key{Kind: "port", Project: r.Project, Name: name})
		if errors.Is(err, store.ErrNotFound) {
			return api.Fieldf(field, "port %q does not exist in project %q", name, r.Project)
		}
		if err != nil {
			return err
		}
		ps := decode[api.PortSpec](pr)
		switch ps.Owner {
		case api.PortOwnerNone:
		case api.PortOwnerCompute:
			return &api.Error{Code: http.StatusConflict, Field: field, Message: fmt.Sprintf("port %q is in use by another instance", name)}
		default:
			return api.Fieldf(field, "port %q belongs to %q", name, ps.Owner)
		}
		ps.Host, ps.Owner = s.Host, api.PortOwnerCompute
		if err := putSpec(a.Tx, pr, &ps); err != nil {
			return err
		}
	}
	return nil
}

func putSpec(tx *store.Tx, r api.Resource, spec any) error {
	buf, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	r.Spec = buf
	_, _, err = tx.Put(r)
	return err
}

// deleteInstance deletes the ports made for the instance's networks and
// the root volume made from its image, and unbinds its own ports, in the
// commit that deletes it. Its other volumes stay (detached).
func deleteInstance(a *Admission, r api.Resource) error {
	s := decode[api.InstanceSpec](r)
	if s.RootVolume != "" {
		key := api.Key{Kind: "volume", Project: r.Project, Name: s.RootVolume}
		if vr, err := a.Tx.Get(key); err == nil {
			if err := volumeDependents(a, vr); err != nil {
				return fmt.Errorf("root volume of instance %q: %w", r.Name, err)
			}
			if _, err := a.Tx.Delete(key); err != nil {
				return err
			}
		}
	}
	for _, name := range s.NetworkPorts {
		if _, err := a.Tx.Delete(api.Key{Kind: "port", Project: r.Project, Name: name}); err != nil {
			return err
		}
	}
	for _, name := range s.Ports {
		pr, err := a.Tx.Get(api.Key{Kind: "port", Project: r.Project, Name: name})
		if err != nil {
			continue // gone already
		}
		ps := decode[api.PortSpec](pr)
		if ps.Owner != api.PortOwnerCompute {
			continue
		}
		ps.Host, ps.Owner = "", api.PortOwnerNone
		if err := putSpec(a.Tx, pr, &ps); err != nil {
			return err
		}
	}
	return nil
}

// portInUse refuses to delete a port an instance uses; deleting the
// instance deletes or unbinds it.
func portInUse(a *Admission, r api.Resource) error {
	if decode[api.PortSpec](r).Owner != api.PortOwnerCompute {
		return nil
	}
	ins, err := a.Tx.List("instance", r.Project, false)
	if err != nil {
		return err
	}
	for _, in := range ins {
		s := decode[api.InstanceSpec](in)
		if slices.Contains(s.Ports, r.Name) || slices.Contains(s.NetworkPorts, r.Name) {
			return Conflictf("port %q is used by instance %q; delete the instance first", r.Name, in.Name)
		}
	}
	return nil
}
