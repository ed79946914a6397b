package membership

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/gossip"
)

// Member is the part of gossip.Member the sync drives.
type Member interface {
	SetIdentities(map[string]gossip.Identity)
	SetKeys(keys [][]byte, primary []byte) error
}

// Sync keeps the coordinator's own gossip member on the committed state:
// the registered host identities it admits and the pool keyring.
type Sync struct {
	Store  *store.Store
	Member Member
	Log    *slog.Logger
	// applied is the last epoch whose keyring the member holds.
	applied atomic.Uint64
}

// Applied is the last epoch the member's identities and keys follow.
func (s *Sync) Applied() uint64 { return s.applied.Load() }

// Run applies the state now and after every commit, until ctx ends.
func (s *Sync) Run(ctx context.Context) {
	for {
		changed := s.Store.Changed()
		if err := s.Once(); err != nil {
			s.Log.Error("gossip admission and keys not applied", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// Once applies the committed identities and keyring.
func (s *Sync) Once() error {
	var ids map[string]gossip.Identity
	var ring *api.GossipKeyringSpec
	var epoch uint64
	err := s.Store.View(func(tx *store.Tx) error {
		epoch = tx.Epoch()
		rs, err := tx.List("hostidentity", "", false)
		if err != nil {
			return err
		}
		ids = gossip.Identities(rs)
		r, err := tx.Get(api.Key{Kind: "gossipkeyring", Name: api.GossipKeyringName})
		if err == nil {
			var spec api.GossipKeyringSpec
			if json.Unmarshal(r.Spec, &spec) == nil {
				ring = &spec
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.Member.SetIdentities(ids)
	if ring != nil {
		keys, primary, err := gossip.DecodeKeyring(*ring)
		if err != nil {
			return fmt.Errorf("stored gossip keyring: %w", err)
		}
		if err := s.Member.SetKeys(keys, primary); err != nil {
			return err
		}
	}
	s.applied.Store(epoch)
	return nil
}
