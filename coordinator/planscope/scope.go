// Package planscope decides what each host's plan holds and which hosts
// a commit concerns. A host's plan holds the global kinds, what is placed
// on it (its instances, routers and their floating IPs and firewall
// groups, its host config), the networks it has a port on (its DHCP and
// router ports included, and those of an instance moving to it) with
// their subnets and every port on them, the security groups of the
// projects of those networks, and the volumes its instances attach or
// boot from. A commit wakes only the hosts whose plan it changes; the
// others keep waiting, and find the epochs they missed as empty deltas
// when they next ask.
//
// A storage host (one that runs the storage controller, which makes and
// deletes RBD images for the whole cluster) asks for the storage plan: its
// own plan plus every volume and volume snapshot. Its controller deletes
// the images that plan does not hold, so it must never be given less.
//
// The scope follows the store's commits in memory: each commit's changes
// are mapped onto the hosts they concern once, when committed, and served
// from memory to every watcher. A scope that starts on a store with
// history (a coordinator restarted) rebuilds the mapping of the retained
// commits before its start, from the store's delta log, the first time a
// host asks from before it: hosts go on by deltas, not full plans.
package planscope

import (
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
)

// record is what one epoch's commit means to the hosts.
type record struct {
	epoch uint64
	all   []api.Change            // changes for every host (global kinds)
	each  []eachChange            // changes each host's filter decides
	hosts map[string][]api.Change // changes for some hosts
	// storage is every volume and snapshot change: the storage hosts'.
	storage []api.Change
	// rescoped hosts gained or lost resources the commit did not change:
	// they get a full plan.
	rescoped map[string]bool
}

// eachChange is a change of a kind whose OnHost the registry decides,
// with the resource as it was before, so a host is told of a resource
// that left its plan and of nothing it never held.
type eachChange struct {
	api.Change
	prev *api.Resource
}

// Scope is the per-host view of a store's plans.
type Scope struct {
	store  *store.Store
	reg    *registry.Registry
	retain int

	mu      sync.RWMutex
	ix      *index
	epoch   uint64    // the epoch the index is at
	base    uint64    // records cover the epochs after base
	records []*record // (base, epoch], oldest first
	// last is the latest epoch whose commit concerned each host, and
	// lastAll the latest that concerned every host.
	last    map[string]uint64
	lastAll uint64
	// storageHosts are the hosts that asked for the storage plan, and
	// lastStorage the latest epoch that changed a volume or snapshot.
	storageHosts map[string]bool
	lastStorage  uint64
	waiters      map[string]chan struct{}
	// others holds the resources of kinds the registry's OnHost decides.
	others map[api.Key]api.Resource

	// start is the epoch the scope was built at; rebuild maps the
	// retained commits before it, once.
	start   uint64
	rebuild sync.Once
}

// New builds the scope of st's plans and follows st's commits from now
// on. It keeps as many epochs as st retains deltas.
func New(st *store.Store, reg *registry.Registry, retain int) (*Scope, error) {
	if retain <= 0 {
		retain = store.DefaultRetainDeltas
	}
	sc := &Scope{store: st, reg: reg, retain: retain, ix: newIndex(), last: map[string]uint64{},
		waiters: map[string]chan struct{}{}, others: map[api.Key]api.Resource{}, storageHosts: map[string]bool{}}
	err := st.ObserveFrom(func(epoch uint64, tx *store.Tx) error {
		sc.epoch, sc.base, sc.start = epoch, epoch, epoch
		err := tx.All(func(r api.Resource) error {
			sc.ix.apply(api.OpPut, r)
			if _, each, _ := sc.otherHosts(r); each {
				sc.others[r.Key()] = r
			}
			return nil
		})
		sc.ix.rescoped = map[string]bool{}
		return err
	}, sc.observe)
	if err != nil {
		return nil, err
	}
	return sc, nil
}

// observe maps one commit onto the hosts. Called in commit order.
func (sc *Scope) observe(epoch uint64, changes []api.Change) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	// One change per resource: its state before the commit, and after.
	type last struct {
		ch        api.Change
		before    []string
		all, each bool
	}
	var order []api.Key
	byKey := map[api.Key]*last{}
	for _, ch := range changes {
		k := ch.Resource.Key()
		if l, ok := byKey[k]; ok {
			l.ch = ch
			continue
		}
		l := &last{ch: ch}
		if relational(k.Kind) {
			l.before = sc.ix.hosts(ch.Resource)
		} else {
			l.all, l.each, l.before = sc.otherHosts(ch.Resource)
		}
		byKey[k] = l
		order = append(order, k)
	}
	for _, ch := range changes {
		sc.ix.apply(ch.Op, ch.Resource)
	}
	rec := &record{epoch: epoch, hosts: map[string][]api.Change{}, rescoped: sc.ix.rescoped}
	sc.ix.rescoped = map[string]bool{}
	for _, k := range order {
		l := byKey[k]
		if storageKind(k.Kind) {
			rec.storage = append(rec.storage, l.ch)
		}
		switch {
		case l.all:
			rec.all = append(rec.all, l.ch)
			continue
		case l.each:
			ec := eachChange{Change: l.ch}
			if prev, ok := sc.others[k]; ok {
				ec.prev = &prev
			}
			if l.ch.Op == api.OpPut {
				sc.others[k] = l.ch.Resource
			} else {
				delete(sc.others, k)
			}
			rec.each = append(rec.each, ec)
			continue
		}
		var after []string
		if l.ch.Op == api.OpPut {
			if relational(k.Kind) {
				after = sc.ix.hosts(l.ch.Resource)
			} else {
				_, _, after = sc.otherHosts(l.ch.Resource)
			}
		}
		in := map[string]bool{}
		for _, h := range after {
			in[h] = true
			if !rec.rescoped[h] {
				rec.hosts[h] = append(rec.hosts[h], l.ch)
			}
		}
		for _, h := range l.before {
			if in[h] || rec.rescoped[h] {
				continue
			}
			rec.hosts[h] = append(rec.hosts[h], deleteOf(l.ch))
		}
	}
	if epoch != sc.epoch+1 {
		// An epoch jump (a restore) or a reload: start the records anew;
		// every host older than this epoch takes a full plan.
		sc.records, sc.base = nil, epoch
		sc.epoch = epoch
		sc.wakeAll(epoch)
		return
	}
	sc.epoch = epoch
	sc.records = append(sc.records, rec)
	if len(sc.records) > sc.retain {
		drop := len(sc.records) - sc.retain
		sc.base = sc.records[drop-1].epoch
		sc.records = append([]*record(nil), sc.records[drop:]...)
	}
	if len(rec.storage) > 0 {
		sc.lastStorage = epoch
		for h := range sc.storageHosts {
			sc.wake(h, epoch)
		}
	}
	if len(rec.all) > 0 || len(rec.each) > 0 {
		sc.wakeAll(epoch)
		return
	}
	for h := range rec.hosts {
		sc.wake(h, epoch)
	}
	for h := range rec.rescoped {
		sc.wake(h, epoch)
	}
}

// otherHosts is the registry's say for a kind the index does not decide:
// every host (no OnHost), the host a host config is named for, none for
// the kinds no host gets; each is true for any other kind with an OnHost,
// which is then decided per host as the host reads the delta.
func (sc *Scope) otherHosts(r api.Resource) (all, each bool, hosts []string) {
	k, ok := sc.reg.Get(r.Kind)
	switch {
	case !ok:
		return false, false, nil
	case k.OnHost == nil:
		return true, false, nil
	case r.Kind == "hostconfig":
		return false, false, []string{r.Name}
	case r.Kind == "aggregate" || r.Kind == "servergroup":
		return false, false, nil // the coordinator's alone
	}
	return false, true, nil
}

func (sc *Scope) wake(host string, epoch uint64) {
	sc.last[host] = epoch
	if ch, ok := sc.waiters[host]; ok {
		close(ch)
		delete(sc.waiters, host)
	}
}

func (sc *Scope) wakeAll(epoch uint64) {
	sc.lastAll = epoch
	for h, ch := range sc.waiters {
		close(ch)
		delete(sc.waiters, h)
	}
}

// Waiting is how many hosts have a long-poll parked.
func (sc *Scope) Waiting() int {
	sc.mu.RLock()
	defer sc.mu.RUnlock()
	return len(sc.waiters)
}

// Epoch is the epoch the scope is at.
func (sc *Scope) Epoch() uint64 {
	sc.mu.RLock()
	defer sc.mu.RUnlock()
	return sc.epoch
}

// Need is the epoch host must have applied to hold its whole plan: the
// latest commit that concerned it (or the oldest epoch the scope can
// still answer with deltas). A host there is converged, whatever the
// cluster epoch.
func (sc *Scope) Need(host string) uint64 {
	sc.mu.RLock()
	defer sc.mu.RUnlock()
	return sc.needLocked(host)
}

func (sc *Scope) needLocked(host string) uint64 {
	n := max(sc.last[host], sc.lastAll, sc.base)
	if sc.storageHosts[host] {
		n = max(n, sc.lastStorage)
	}
	return n
}

// storageKind reports whether kind goes whole to the storage hosts.
func storageKind(kind string) bool { return kind == "volume" || kind == "volumesnapshot" }

// NoteStorage records that host runs the storage controller (it asked for
// the storage plan, or reported as a controller): every volume and
// snapshot change wakes it, its convergence counts them, and it may
// report on them. A coordinator learns this afresh after a restart, from
// the host's next request.
func (sc *Scope) NoteStorage(host string) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.storageHosts[host] = true
}

// Changed returns a channel closed at the next commit that concerns host.
func (sc *Scope) Changed(host string) <-chan struct{} {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	ch, ok := sc.waiters[host]
	if !ok {
		ch = make(chan struct{})
		sc.waiters[host] = ch
	}
	return ch
}

// Keep is the store filter of host's plan, for a caller that holds no
// snapshot of its own (reports, statuses): the index's current state.
func (sc *Scope) Keep(host string) store.Filter {
	return func(r api.Resource) bool {
		sc.mu.RLock()
		defer sc.mu.RUnlock()
		return sc.keepLocked(host, sc.storageHosts[host], r)
	}
}

func (sc *Scope) keepLocked(host string, storage bool, r api.Resource) bool {
	if storage && storageKind(r.Kind) {
		return true
	}
	if relational(r.Kind) {
		return sc.ix.holds(host, r)
	}
	return sc.reg.PlanFilter(host)(r)
}

// ErrBehind is returned when the scope does not reach the store's epoch
// in time.
var ErrBehind = errors.New("plan scope is behind the store")

// Plan is host's plan after epoch since: the deltas of (since, epoch],
// each holding only what concerns the host (an epoch that concerned it
// not is an empty delta), or its full plan when those are not all kept,
// or when the host gained or lost resources that no delta names. With
// storage it is the storage plan (every volume and snapshot besides).
func (sc *Scope) Plan(host string, since uint64, storage bool) (api.Plan, error) {
	if since > 0 && since < sc.start {
		sc.rebuild.Do(sc.rebuildBefore)
	}
	for try := 0; ; try++ {
		p, ok, err := sc.plan(host, since, storage)
		p.Storage = storage
		if ok || err != nil {
			return p, err
		}
		// The store published an epoch the index has not seen yet; its
		// observer runs right after.
		if try == 2000 {
			return api.Plan{}, ErrBehind
		}
		time.Sleep(time.Millisecond)
	}
}

func (sc *Scope) plan(host string, since uint64, storage bool) (api.Plan, bool, error) {
	sc.mu.RLock()
	defer sc.mu.RUnlock()
	epoch := sc.epoch
	if since > epoch {
		return api.Plan{}, false, nil
	}
	if since == epoch {
		return api.Plan{Host: host, Epoch: epoch, History: sc.store.History()}, true, nil
	}
	if since > 0 && since >= sc.base {
		if ds, ok := sc.deltas(host, since, storage); ok {
			return api.Plan{Host: host, Epoch: epoch, History: sc.store.History(), Deltas: ds}, true, nil
		}
	}
	p, err := sc.store.Plan(host, 0, func(r api.Resource) bool { return sc.keepLocked(host, storage, r) })
	if err != nil {
		return p, true, err
	}
	// The index must describe the snapshot the store answered from.
	return p, p.Epoch == epoch, nil
}

// rebuildBefore maps the store's retained commits before the scope's
// start onto the hosts, as observe would have when they were made: the
// index is rebuilt at the oldest epoch the store can rewind to and
// follows the commits from there up to the start.
func (sc *Scope) rebuildBefore() {
	base, state, deltas, err := sc.store.Rewind(sc.start)
	if err != nil || base >= sc.start {
		return
	}
	old := &Scope{reg: sc.reg, retain: sc.retain, ix: newIndex(), last: map[string]uint64{},
		waiters: map[string]chan struct{}{}, others: map[api.Key]api.Resource{}, storageHosts: map[string]bool{},
		epoch: base, base: base}
	for _, r := range state {
		old.ix.apply(api.OpPut, r)
		if _, each, _ := old.otherHosts(r); each {
			old.others[r.Key()] = r
		}
	}
	old.ix.rescoped = map[string]bool{}
	for _, d := range deltas {
		old.observe(d.Epoch, d.Changes)
	}
	if old.epoch != sc.start {
		return
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.base != sc.start {
		return // a reset since (a restore): the old commits no longer lead here
	}
	sc.records = append(old.records, sc.records...)
	sc.base = old.base
	if len(sc.records) > sc.retain {
		drop := len(sc.records) - sc.retain
		sc.base = sc.records[drop-1].epoch
		sc.records = append([]*record(nil), sc.records[drop:]...)
	}
	for h, e := range old.last {
		sc.last[h] = max(sc.last[h], e)
	}
	sc.lastAll = max(sc.lastAll, old.lastAll)
	sc.lastStorage = max(sc.lastStorage, old.lastStorage)
}

// deltas builds host's deltas after since; ok is false when the host must
// take a full plan instead.
func (sc *Scope) deltas(host string, since uint64, storage bool) ([]api.Delta, bool) {
	i := sort.Search(len(sc.records), func(i int) bool { return sc.records[i].epoch > since })
	out := make([]api.Delta, 0, len(sc.records)-i)
	for _, rec := range sc.records[i:] {
		if rec.rescoped[host] {
			return nil, false
		}
		d := api.Delta{Epoch: rec.epoch, Changes: []api.Change{}}
		d.Changes = append(d.Changes, rec.all...)
		keep := sc.reg.PlanFilter(host)
		for _, ec := range rec.each {
			was := ec.prev != nil && keep(*ec.prev)
			switch {
			case ec.Op == api.OpPut && keep(ec.Resource):
				d.Changes = append(d.Changes, ec.Change)
			case was:
				d.Changes = append(d.Changes, deleteOf(ec.Change))
			}
		}
		if !storage {
			d.Changes = append(d.Changes, rec.hosts[host]...)
			out = append(out, d)
			continue
		}
		// A storage host takes every volume and snapshot change, once.
		for _, ch := range rec.hosts[host] {
			if !storageKind(ch.Resource.Kind) {
				d.Changes = append(d.Changes, ch)
			}
		}
		d.Changes = append(d.Changes, rec.storage...)
		out = append(out, d)
	}
	return out, true
}

// Concerned lists the hosts the commit at epoch concerned, and whether it
// concerned every host. ok is false when the epoch is no longer kept.
func (sc *Scope) Concerned(epoch uint64) (hosts []string, all bool, ok bool) {
	sc.mu.RLock()
	defer sc.mu.RUnlock()
	i := sort.Search(len(sc.records), func(i int) bool { return sc.records[i].epoch >= epoch })
	if i == len(sc.records) || sc.records[i].epoch != epoch {
		return nil, false, false
	}
	rec := sc.records[i]
	if len(rec.all) > 0 || len(rec.each) > 0 {
		return nil, true, true
	}
	seen := map[string]bool{}
	for h := range rec.hosts {
		seen[h] = true
	}
	for h := range rec.rescoped {
		seen[h] = true
	}
	if len(rec.storage) > 0 {
		for h := range sc.storageHosts {
			seen[h] = true
		}
	}
	for h := range seen {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	return hosts, false, true
}

// deleteOf is the delete a host gets for a change that took the resource
// out of its plan.
func deleteOf(ch api.Change) api.Change {
	if ch.Op == api.OpDelete {
		return ch
	}
	r := ch.Resource
	return api.Change{Op: api.OpDelete, Resource: api.Resource{Kind: r.Kind, Project: r.Project, Name: r.Name, Epoch: r.Epoch}}
}
