package store

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdBackend keeps a store in an etcd cluster, for any number of
// stateless coordinators in front of it. Under its prefix:
//
//	epoch            the cluster epoch (decimal)
//	history          the line of epochs
//	r/<key>          a resource (its JSON)
//	d/<epoch>        a retained delta, the epoch zero-padded to 20 digits
//	o/<ns>/<key>     observed state (tokens, host reports, statuses)
//
// Each commit is one etcd transaction that compares the epoch with the one
// the commit was made on and then writes the resources, the delta and the
// next epoch; a coordinator that lost the race catches up from the deltas
// and runs its transaction again. Coordinators follow each other's commits
// by watching the deltas.
type etcdBackend struct {
	c       *clientv3.Client
	p       string
	timeout time.Duration
	log     *slog.Logger
	rev     int64 // the revision of the last Load, to follow from
}

// EtcdOptions configure an etcd-backed store.
type EtcdOptions struct {
	// Prefix under which the store keeps its keys (default "/strata/").
	Prefix string
	// Timeout bounds each request (default 10 s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// OpenEtcd loads a store from the etcd cluster c talks to. The caller
// owns c (the same client holds the coordinator's leases) and closes it
// after the store; run Follow to see the other coordinators' commits.
func OpenEtcd(c *clientv3.Client, eo EtcdOptions, opts Options) (*Store, error) {
	if eo.Prefix == "" {
		eo.Prefix = "/strata/"
	}
	if !strings.HasSuffix(eo.Prefix, "/") {
		eo.Prefix += "/"
	}
	if eo.Timeout == 0 {
		eo.Timeout = 10 * time.Second
	}
	if eo.Logger == nil {
		eo.Logger = slog.New(slog.DiscardHandler)
	}
	return OpenBackend(&etcdBackend{c: c, p: eo.Prefix, timeout: eo.Timeout, log: eo.Logger}, opts)
}

func (b *etcdBackend) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), b.timeout)
}

func (b *etcdBackend) deltaKey(epoch uint64) string { return fmt.Sprintf("%sd/%020d", b.p, epoch) }

func (b *etcdBackend) Load() (*Loaded, error) {
	ctx, cancel := b.ctx()
	defer cancel()
	// A fresh cluster gets its history once, whoever comes first.
	hist := b.p + "history"
	if _, err := b.c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(hist), "=", 0)).
		Then(clientv3.OpPut(hist, newHistory())).Commit(); err != nil {
		return nil, fmt.Errorf("etcd: init history: %w", err)
	}
	// Everything at one revision, so resources, deltas and epoch agree.
	resp, err := b.c.Txn(ctx).Then(
		clientv3.OpGet(b.p+"epoch"),
		clientv3.OpGet(hist),
		clientv3.OpGet(b.p+"r/", clientv3.WithPrefix()),
		clientv3.OpGet(b.p+"d/", clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("etcd: load: %w", err)
	}
	l := &Loaded{Rev: resp.Header.Revision}
	r := resp.Responses
	if kvs := r[0].GetResponseRange().Kvs; len(kvs) == 1 {
		if l.Epoch, err = strconv.ParseUint(string(kvs[0].Value), 10, 64); err != nil {
			return nil, fmt.Errorf("etcd: epoch %q: %w", kvs[0].Value, err)
		}
	}
	if kvs := r[1].GetResponseRange().Kvs; len(kvs) == 1 {
		l.History = string(kvs[0].Value)
	}
	for _, kv := range r[2].GetResponseRange().Kvs {
		l.Resources = append(l.Resources, KV{Key: strings.TrimPrefix(string(kv.Key), b.p+"r/"), Val: kv.Value})
	}
	for _, kv := range r[3].GetResponseRange().Kvs {
		var d storedDelta
		if err := json.Unmarshal(kv.Value, &d); err != nil {
			return nil, fmt.Errorf("etcd: decode delta %q: %w", kv.Key, err)
		}
		l.Deltas = append(l.Deltas, d)
	}
	b.rev = l.Rev
	return l, nil
}

// epochIs is the comparison every commit makes: the stored epoch is still
// the one the commit was made on.
func (b *etcdBackend) epochIs(base uint64) clientv3.Cmp {
	if base == 0 {
		return clientv3.Compare(clientv3.CreateRevision(b.p+"epoch"), "=", 0)
	}
	return clientv3.Compare(clientv3.Value(b.p+"epoch"), "=", strconv.FormatUint(base, 10))
}

func (b *etcdBackend) Commit(rec *Record) error {
	ops := make([]clientv3.Op, 0, len(rec.Puts)+len(rec.Deletes)+len(rec.Obs)+3)
	for _, kv := range rec.Puts {
		ops = append(ops, clientv3.OpPut(b.p+"r/"+kv.Key, string(kv.Val)))
	}
	for _, k := range rec.Deletes {
		ops = append(ops, clientv3.OpDelete(b.p+"r/"+k))
	}
	ops = append(ops, clientv3.OpPut(b.deltaKey(rec.Epoch), string(rec.Delta)),
		clientv3.OpPut(b.p+"epoch", strconv.FormatUint(rec.Epoch, 10)))
	if rec.TrimTo > 0 {
		ops = append(ops, clientv3.OpDelete(b.p+"d/", clientv3.WithRange(b.deltaKey(rec.TrimTo+1))))
	}
	ops = append(ops, b.obsOps(rec.Obs)...)
	cmps := []clientv3.Cmp{b.epochIs(rec.Base)}
	var orElse []clientv3.Op
	if g := rec.Guard; g.Key != "" {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(g.Key), "=", g.Rev))
		orElse = append(orElse, clientv3.OpGet(g.Key, clientv3.WithKeysOnly()))
	}
	ctx, cancel := b.ctx()
	defer cancel()
	resp, err := b.c.Txn(ctx).If(cmps...).Then(ops...).Else(orElse...).Commit()
	if err != nil {
		return fmt.Errorf("etcd: commit epoch %d: %w", rec.Epoch, err)
	}
	if !resp.Succeeded {
		if len(orElse) > 0 && !guardHolds(resp, rec.Guard) {
			return fmt.Errorf("commit epoch %d under lease %s (revision %d): %w", rec.Epoch, rec.Guard.Key, rec.Guard.Rev, ErrLeaseLost)
		}
		return ErrEpochMoved
	}
	return nil
}

// guardHolds reads a failed guarded commit's Else: whether the lease key
// was still there, made at the guard's revision.
func guardHolds(resp *clientv3.TxnResponse, g LeaseGuard) bool {
	if len(resp.Responses) == 0 {
		return false
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	return len(kvs) == 1 && kvs[0].CreateRevision == g.Rev
}

func (b *etcdBackend) obsKey(ns, key string) string { return b.p + "o/" + ns + "/" + key }

func (b *etcdBackend) obsOps(obs []ObsOp) []clientv3.Op {
	var ops []clientv3.Op
	for _, op := range obs {
		k := b.obsKey(op.NS, op.Key)
		switch {
		case op.Prefix:
			ops = append(ops, clientv3.OpDelete(k, clientv3.WithPrefix()))
		case op.Delete:
			ops = append(ops, clientv3.OpDelete(k))
		default:
			ops = append(ops, clientv3.OpPut(k, string(op.Val)))
		}
	}
	return ops
}

func (b *etcdBackend) Get(ns, key string) ([]byte, error) {
	ctx, cancel := b.ctx()
	defer cancel()
	resp, err := b.c.Get(ctx, b.obsKey(ns, key))
	if err != nil {
		return nil, fmt.Errorf("etcd: get %s %q: %w", ns, key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0].Value, nil
}

func (b *etcdBackend) Scan(ns, prefix string, fn func(string, []byte) error) error {
	ctx, cancel := b.ctx()
	defer cancel()
	base := b.obsKey(ns, "")
	resp, err := b.c.Get(ctx, base+prefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("etcd: scan %s %q: %w", ns, prefix, err)
	}
	for _, kv := range resp.Kvs {
		if err := fn(strings.TrimPrefix(string(kv.Key), base), kv.Value); err != nil {
			return err
		}
	}
	return nil
}

func (b *etcdBackend) Write(ops []ObsOp) error {
	ctx, cancel := b.ctx()
	defer cancel()
	if _, err := b.c.Txn(ctx).Then(b.obsOps(ops)...).Commit(); err != nil {
		return fmt.Errorf("etcd: write observed state: %w", err)
	}
	return nil
}

// Close does nothing: the client belongs to the caller.
func (b *etcdBackend) Close() error { return nil }

// catchUp applies the deltas other coordinators committed after the
// store's epoch, or reloads everything when they are no longer retained.
// Called with commitMu held.
func (b *etcdBackend) catchUp(s *Store) error {
	_, err := b.catchUpRev(s)
	return err
}

// catchUpRev is catchUp, returning the etcd revision the store is now
// current with.
func (b *etcdBackend) catchUpRev(s *Store) (int64, error) {
	ctx, cancel := b.ctx()
	defer cancel()
	resp, err := b.c.Get(ctx, b.deltaKey(s.Epoch()+1), clientv3.WithRange(clientv3.GetPrefixRangeEnd(b.p+"d/")))
	if err != nil {
		return 0, fmt.Errorf("etcd: read deltas: %w", err)
	}
	for _, kv := range resp.Kvs {
		var d storedDelta
		if err := json.Unmarshal(kv.Value, &d); err != nil {
			return 0, fmt.Errorf("etcd: decode delta %q: %w", kv.Key, err)
		}
		if !s.applyDelta(d) {
			l, err := b.Load()
			if err != nil {
				return 0, err
			}
			s.reload(l)
			return l.Rev, nil
		}
	}
	return resp.Header.Revision, nil
}

// Sync brings the store up to the backend's epoch now, without waiting
// for Follow: for an answer that must not be older than what a client
// has already seen from another coordinator. Nothing to do on bbolt.
func (s *Store) Sync() error {
	b, ok := s.backend.(*etcdBackend)
	if !ok {
		return nil
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	return b.catchUp(s)
}

// Follow applies the commits of other coordinators as they happen, until
// ctx ends: the store's epoch, plans and observers stay current without
// a write of this coordinator's own. It does nothing for a backend that
// only this coordinator writes (bbolt).
func (s *Store) Follow(ctx context.Context) error {
	b, ok := s.backend.(*etcdBackend)
	if !ok {
		return nil
	}
	s.commitMu.Lock()
	rev := b.rev
	s.commitMu.Unlock()
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := b.c.Watch(wctx, b.p+"d/", clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for resp := range wch {
			if err := resp.Err(); err != nil {
				b.log.Warn("etcd: following commits", "err", err)
				break
			}
			s.commitMu.Lock()
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut {
					continue // a trimmed delta
				}
				var d storedDelta
				if err := json.Unmarshal(ev.Kv.Value, &d); err != nil {
					b.log.Error("etcd: undecodable delta", "key", string(ev.Kv.Key), "err", err)
					continue
				}
				if !s.applyDelta(d) {
					if err := b.catchUp(s); err != nil {
						b.log.Warn("etcd: catching up", "err", err)
					}
				}
			}
			rev = resp.Header.Revision
			s.commitMu.Unlock()
		}
		cancel()
		if ctx.Err() != nil {
			break
		}
		// The watch ended (compaction, lost leader, a closed stream):
		// read what was missed, then watch from there.
		s.commitMu.Lock()
		r, err := b.catchUpRev(s)
		if err == nil {
			rev = max(rev, r)
		}
		s.commitMu.Unlock()
		if err != nil {
			b.log.Warn("etcd: catching up", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return ctx.Err()
}

var _ follower = (*etcdBackend)(nil)
