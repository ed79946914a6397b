// Package commit is the one door to the coordinator's desired state: every
// write (the HTTP API's, the scheduler's, the recovery controller's) is
// admitted, checked against If-Match, quota and the host contract, and
// committed as one epoch with its delta here. Callers never open a write
// transaction of their own for a resource a kind admits.
package commit

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sort"

	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/contract"
)

// Service commits desired-state changes.
type Service struct {
	store *store.Store
	reg   *registry.Registry
	hosts func() []api.Host
	log   *slog.Logger
}

// New returns a commit service over st. hosts is the gossip view (nil:
// none known).
func New(st *store.Store, reg *registry.Registry, hosts func() []api.Host, log *slog.Logger) *Service {
	if hosts == nil {
		hosts = func() []api.Host { return nil }
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{store: st, reg: reg, hosts: hosts, log: log}
}

// Store is the store the service commits to.
func (s *Service) Store() *store.Store { return s.store }

// Who says on whose behalf a write is made.
type Who struct {
	// Admin writes may set what only an operator may.
	Admin bool
	// System marks the coordinator's own writes (a rescheduled build, a
	// recovered instance), which may set what no client may.
	System bool
}

// Put is one create or update of a resource.
type Put struct {
	Key api.Key
	// Spec is the decoded spec to admit (a pointer from the kind's
	// NewSpec). Either Spec or Edit is set.
	Spec any
	// Edit derives the spec from the stored resource inside the commit
	// (prev is nil when there is none); a nil spec and nil error means
	// there is nothing to change.
	Edit func(prev *api.Resource) (any, error)
	// Request is the spec as the client sent it, to name the assigned
	// fields an update kept (api.PutResult.Kept); nil skips that.
	Request json.RawMessage
	// MustBeNew refuses the write when the resource exists (POST).
	MustBeNew bool
	// IfMatch, when set, is the resource epoch the writer read: a write
	// onto any other version is refused with 412.
	IfMatch *uint64
	Who     Who
}

// PutResult is what a Put did.
type PutResult struct {
	api.PutResult
	Created bool
}

// Put admits and commits one resource.
func (s *Service) Put(p Put) (PutResult, error) {
	k, ok := s.reg.Get(p.Key.Kind)
	if !ok {
		return PutResult{}, fmt.Errorf("kind %q is not registered", p.Key.Kind)
	}
	facts := s.Facts(p.Key.Kind) // read outside the write transaction
	var out PutResult
	epoch, changed, err := s.store.Update(func(tx *store.Tx) (err error) {
		out, err = s.putTx(tx, k, p, facts)
		return err
	})
	if err != nil {
		return PutResult{}, err
	}
	out.Changed, out.Epoch = changed, epoch
	return out, nil
}

// errDryRun rolls a dry run's transaction back.
var errDryRun = errors.New("dry run")

// DryRunError is a dry run's refusal of one of its puts.
type DryRunError struct {
	Index int // of the put in the dry run
	Err   error
}

func (e *DryRunError) Error() string { return e.Err.Error() }
func (e *DryRunError) Unwrap() error { return e.Err }

// DryRun admits puts in order inside one transaction, each seeing the ones
// before it (a subnet its network), as if they were committed one after
// another, then rolls everything back: nothing is stored and no epoch
// moves. Each result's Resource is the resource as it would be stored,
// and Changed says whether that put would change anything. A refusal is
// a *DryRunError naming the put.
func (s *Service) DryRun(puts []Put) ([]PutResult, error) {
	kinds := make([]*registry.Kind, len(puts))
	facts := map[string]*contract.Facts{}
	for i, p := range puts {
		k, ok := s.reg.Get(p.Key.Kind)
		if !ok {
			return nil, &DryRunError{i, fmt.Errorf("kind %q is not registered", p.Key.Kind)}
		}
		kinds[i] = k
		if _, ok := facts[k.Name]; !ok {
			facts[k.Name] = s.Facts(k.Name)
		}
	}
	var out []PutResult
	_, _, err := s.store.Update(func(tx *store.Tx) error {
		for i, p := range puts {
			r, err := s.putTx(tx, kinds[i], p, facts[kinds[i].Name])
			if err != nil {
				return &DryRunError{i, err}
			}
			out = append(out, r)
		}
		return errDryRun
	})
	if !errors.Is(err, errDryRun) {
		return nil, err
	}
	return out, nil
}

// putTx admits one put inside tx and writes it there; Changed says
// whether the write changes the stored resource.
func (s *Service) putTx(tx *store.Tx, k *registry.Kind, p Put, facts *contract.Facts) (PutResult, error) {
	var out PutResult
	if p.Key.Project != "" {
		if _, err := tx.Get(api.Key{Kind: "project", Name: p.Key.Project}); errors.Is(err, store.ErrNotFound) {
			return out, &api.Error{Code: http.StatusNotFound, Message: "project " + p.Key.Project + " does not exist"}
		}
	}
	prev, getErr := tx.Get(p.Key)
	exists := getErr == nil
	if getErr != nil && !errors.Is(getErr, store.ErrNotFound) {
		return out, getErr
	}
	if p.MustBeNew && exists {
		return out, registry.Conflictf("%s %q already exists", k.Name, p.Key.Name)
	}
	if err := Precondition(k.Name, p.Key.Name, p.IfMatch, prev, exists); err != nil {
		return out, err
	}
	var prevp *api.Resource
	if exists {
		prevp = &prev
	}
	spec := p.Spec
	if p.Edit != nil {
		var err error
		if spec, err = p.Edit(prevp); err != nil || spec == nil {
			return out, err
		}
	}
	out.Created = !exists
	before, err := contractBefore(tx, p.Key, facts)
	if err != nil {
		return out, err
	}
	res := api.Resource{Kind: p.Key.Kind, Project: p.Key.Project, Name: p.Key.Name}
	if k.Admit != nil {
		adm := s.Admission(tx, p.Who)
		adm.Facts, adm.Prev = facts, prevp
		if err := k.Admit(adm, &res, spec); err != nil {
			return out, err
		}
	}
	buf, err := json.Marshal(spec)
	if err != nil {
		return out, err
	}
	res.Spec = buf
	if err := registry.CheckQuota(tx, res, prevp); err != nil {
		return out, err
	}
	if exists && p.Request != nil {
		out.Kept = keptFields(k.Assigned, p.Request, buf, prev.Spec)
	}
	stored, changed, err := tx.Put(res)
	out.Resource, out.Changed = stored, changed
	if err != nil {
		return out, err
	}
	return out, contractAfter(tx, p.Key, before, facts)
}

// Delete is one delete of a resource.
type Delete struct {
	Key     api.Key
	IfMatch *uint64
	Who     Who
}

// Delete checks and commits the removal of one resource (and what its
// kind's BeforeDelete removes or changes with it). A resource that is not
// there is ErrNotFound.
func (s *Service) Delete(d Delete) (api.DeleteResult, error) {
	k, ok := s.reg.Get(d.Key.Kind)
	if !ok {
		return api.DeleteResult{}, fmt.Errorf("kind %q is not registered", d.Key.Kind)
	}
	facts := s.Facts(d.Key.Kind)
	epoch, changed, err := s.store.Update(func(tx *store.Tx) error {
		res, err := tx.Get(d.Key)
		if perr := Precondition(k.Name, d.Key.Name, d.IfMatch, res, err == nil); perr != nil {
			return perr
		}
		if err != nil {
			return err
		}
		before, err := contractBefore(tx, d.Key, facts)
		if err != nil {
			return err
		}
		if k.BeforeDelete != nil {
			if err := k.BeforeDelete(s.Admission(tx, d.Who), res); err != nil {
				return err
			}
		}
		if _, err = tx.Delete(d.Key); err != nil {
			return err
		}
		return contractAfter(tx, d.Key, before, facts)
	})
	if err != nil {
		return api.DeleteResult{}, err
	}
	return api.DeleteResult{Deleted: changed, Epoch: epoch}, nil
}

// Record commits a write of the coordinator's own bookkeeping kinds that
// no admission covers (host identities, the gossip keyring, host
// configuration): fn runs inside one commit. It returns the epoch after
// it and whether anything changed.
func (s *Service) Record(fn func(tx *store.Tx) error) (uint64, bool, error) {
	return s.store.Update(fn)
}

// Admission is what a kind's Admit and BeforeDelete see inside tx.
func (s *Service) Admission(tx *store.Tx, who Who) *registry.Admission {
	return &registry.Admission{Tx: tx, Admin: who.Admin || who.System, System: who.System,
		Settings: s.reg.Settings, Hosts: s.hosts, Scheduler: s.reg.Scheduler}
}

// contractBefore is the contract's verdict before a write of k, so the
// write is refused only for what it breaks (nil for kinds hosts do not
// apply on the network side).
func contractBefore(tx *store.Tx, k api.Key, facts *contract.Facts) ([]contract.Violation, error) {
	if !registry.InContract(k.Kind) {
		return nil, nil
	}
	return registry.ContractViolations(tx, k.Project, facts)
}

// contractAfter refuses a write of k that leaves a state some host would
// refuse to apply.
func contractAfter(tx *store.Tx, k api.Key, before []contract.Violation, facts *contract.Facts) error {
	if !registry.InContract(k.Kind) {
		return nil
	}
	return registry.CheckContract(tx, k, before, facts)
}

// Facts is what the coordinator knows of hosts that the contract needs:
// the physical networks each host maps and its L2 driver (hosts whose
// reports do not say are not checked), and the hosts a resource may name.
// A known host is one an agent token was issued for (registered), one
// gossip has seen since this coordinator started (alive, suspect, dead or
// left), or one that ever reported. It reads the store, so it is called
// outside a write transaction; nil for kinds outside the contract.
func (s *Service) Facts(kind string) *contract.Facts {
	if !registry.InContract(kind) {
		return nil
	}
	reps, err := s.store.Reports()
	if err != nil {
		s.log.Warn("host reports for admission", "err", err)
		return nil
	}
	toks, err := s.store.Tokens()
	if err != nil {
		s.log.Warn("agent tokens for admission", "err", err)
		return nil
	}
	f := &contract.Facts{Physnets: map[string][]string{}, Hosts: map[string]bool{}, L2Drivers: map[string]string{}}
	for h, rep := range reps {
		f.Hosts[h] = true
		if rep.Physnets != nil {
			f.Physnets[h] = rep.Physnets
		}
		if rep.Network != nil && rep.Network.L2Driver != "" {
			f.L2Drivers[h] = rep.Network.L2Driver
		}
	}
	for _, t := range toks {
		if t.Role == api.RoleAgent && t.Host != "" {
			f.Hosts[t.Host] = true
		}
	}
	for _, h := range s.hosts() {
		f.Hosts[h.Name] = true
	}
	return f
}

// Precondition refuses a write whose If-Match names a version other than
// the stored one (412), so a read-modify-write never overwrites, or
// deletes, a change it did not see.
func Precondition(kind, name string, ifMatch *uint64, prev api.Resource, exists bool) error {
	if ifMatch == nil || (exists && prev.Epoch == *ifMatch) {
		return nil
	}
	now := "is gone"
	if exists {
		now = fmt.Sprintf("was changed at epoch %d", prev.Epoch)
	}
	return &api.Error{Code: http.StatusPreconditionFailed,
		Message: fmt.Sprintf("%s %q %s since it was read at epoch %d; read it again", kind, name, now, *ifMatch)}
}

// keptFields names the assigned spec fields a request left out whose
// admitted value is the stored one (segmentation id, MAC, addresses,
// placement) that an update keeps. A write reports them, so what it
// merged is never silent.
func keptFields(assigned []string, request, admitted, stored json.RawMessage) []string {
	var req, adm, old map[string]json.RawMessage
	if json.Unmarshal(request, &req) != nil || json.Unmarshal(admitted, &adm) != nil || json.Unmarshal(stored, &old) != nil {
		return nil
	}
	var kept []string
	for _, f := range assigned {
		v, set := adm[f]
		if _, given := req[f]; given || !set {
			continue
		}
		if o, ok := old[f]; ok && jsonSame(o, v) {
			kept = append(kept, "spec."+f)
		}
	}
	sort.Strings(kept)
	return kept
}

func jsonSame(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
