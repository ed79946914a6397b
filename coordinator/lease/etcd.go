package lease

import (
	"context"
	"fmt"
	"strings"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Etcd is the leases of coordinators sharing one etcd cluster: each hold
// is an election under Prefix+name on an etcd session lease of TTL
// seconds, kept alive while this coordinator reaches etcd.
type Etcd struct {
	Client *clientv3.Client
	// Prefix is where elections live (default "/strata/lease/").
	Prefix string
	// ID names this coordinator in the election (its gossip name).
	ID string
	// TTL is the session lease in seconds (default 5): how long a dead
	// holder keeps the work from everyone else.
	TTL int
}

// Acquire campaigns for name until this coordinator wins or ctx ends.
func (e *Etcd) Acquire(ctx context.Context, name string) (Hold, error) {
	ttl := e.TTL
	if ttl <= 0 {
		ttl = 5
	}
	prefix := e.Prefix
	if prefix == "" {
		prefix = "/strata/lease/"
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	sess, err := concurrency.NewSession(e.Client, concurrency.WithTTL(ttl), concurrency.WithContext(context.Background()))
	if err != nil {
		return nil, fmt.Errorf("lease %q: session: %w", name, err)
	}
	el := concurrency.NewElection(sess, prefix+name)
	if err := el.Campaign(ctx, e.ID); err != nil {
		sess.Close()
		return nil, fmt.Errorf("lease %q: campaign: %w", name, err)
	}
	return &etcdHold{sess: sess, el: el}, nil
}

type etcdHold struct {
	sess *concurrency.Session
	el   *concurrency.Election
	once sync.Once
	err  error
}

func (h *etcdHold) Lost() <-chan struct{} { return h.sess.Done() }

// Token is the revision at which this holder's election key was made:
// every later holder's is larger.
func (h *etcdHold) Token() int64 { return h.el.Rev() }

// Key is this holder's election key: it exists while the hold does.
func (h *etcdHold) Key() string { return h.el.Key() }

func (h *etcdHold) Release(ctx context.Context) error {
	h.once.Do(func() {
		h.err = h.el.Resign(ctx)
		if cerr := h.sess.Close(); h.err == nil {
			h.err = cerr
		}
	})
	return h.err
}
