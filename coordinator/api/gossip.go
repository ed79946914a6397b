package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/gossip"
)

// registerIdentity binds the host's gossip address and VTEP to its name:
// only the host's own credential (or an admin) may, so a member that holds
// the gossip key but not the host's token cannot pass for it.
func (s *Server) registerIdentity(w http.ResponseWriter, r *http.Request) {
	var spec api.HostIdentitySpec
	host, ok := s.hostRequest(w, r, &spec)
	if !ok {
		return
	}
	if err := registry.CheckHostAddr("addr", spec.Addr, true); err != nil {
		s.errorFor(w, err)
		return
	}
	if err := registry.CheckHostAddr("vtep", spec.VTEP, false); err != nil {
		s.errorFor(w, err)
		return
	}
	if spec.Role != "" {
		// Coordinators register themselves from their store.
		s.errorFor(w, api.Fieldf("role", "a host's agent registers a host identity; role must be empty"))
		return
	}
	buf, _ := json.Marshal(spec)
	var res api.PutResult
	epoch, changed, err := s.commit.Record(func(tx *store.Tx) error {
		if old, err := tx.Get(api.Key{Kind: "hostidentity", Name: host}); err == nil && registry.HostIdentity(old).Role == api.IdentityCoordinator {
			return registry.Conflictf("%q is a coordinator's gossip name; no host may register under it", host)
		}
		var err error
		res.Resource, _, err = tx.Put(api.Resource{Kind: "hostidentity", Name: host, Spec: buf})
		return err
	})
	if err != nil {
		s.errorFor(w, err)
		return
	}
	res.Changed, res.Epoch = changed, epoch
	if changed {
		s.log.Info("host identity registered", "host", host, "addr", spec.Addr, "vtep", spec.VTEP, "epoch", epoch, actor(r))
	}
	writeJSON(w, http.StatusOK, res)
}

// KeyFingerprint names a gossip key without showing it.
func KeyFingerprint(key []byte) string {
	h := sha256.Sum256(key)
	return hex.EncodeToString(h[:8])
}

// rotateGossipKey moves the pool to a fresh key without restarts, in
// three committed steps, each waiting until the coordinator and every live
// host hold it: install the new key beside the old, make it primary, drop
// the old. A step that times out leaves a keyring every member can use.
func (s *Server) rotateGossipKey(w http.ResponseWriter, r *http.Request) {
	if e := requireAdmin(r); e != nil {
		writeError(w, e)
		return
	}
	timeout := 2 * time.Minute
	if v := r.URL.Query().Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			s.errorFor(w, api.Fieldf("timeout", "must be a duration such as 60s, not %q", v))
			return
		}
		timeout = d
	}
	s.rotateMu.Lock()
	defer s.rotateMu.Unlock()
	var cur api.GossipKeyringSpec
	err := s.store.View(func(tx *store.Tx) error {
		res, err := tx.Get(api.Key{Kind: "gossipkeyring", Name: api.GossipKeyringName})
		if err != nil {
			return err
		}
		return json.Unmarshal(res.Spec, &cur)
	})
	if errors.Is(err, store.ErrNotFound) {
		s.errorFor(w, registry.Conflictf("no gossip keyring is stored yet; start the coordinator with its gossip key"))
		return
	}
	if err != nil {
		s.errorFor(w, err)
		return
	}
	_, old, err := gossip.DecodeKeyring(cur)
	if err != nil {
		s.errorFor(w, err)
		return
	}
	fresh, err := gossip.GenerateKey()
	if err != nil {
		s.errorFor(w, err)
		return
	}
	deadline := time.Now().Add(timeout)
	steps := []struct {
		what    string
		keys    [][]byte
		primary []byte
	}{
		// Keys older than the primary (a rotation cut short) go here.
		{"install the new key", [][]byte{old, fresh}, old},
		{"encrypt with the new key", [][]byte{old, fresh}, fresh},
		{"remove the old key", [][]byte{fresh}, fresh},
	}
	var epoch uint64
	for _, st := range steps {
		buf, _ := json.Marshal(gossip.EncodeKeyring(st.keys, st.primary))
		epoch, _, err = s.commit.Record(func(tx *store.Tx) error {
			_, _, err := tx.Put(api.Resource{Kind: "gossipkeyring", Name: api.GossipKeyringName, Spec: buf})
			return err
		})
		if err != nil {
			s.errorFor(w, err)
			return
		}
		if err := s.waitKeysHeld(r, epoch, deadline); err != nil {
			s.errorFor(w, &api.Error{Code: http.StatusGatewayTimeout, Message: fmt.Sprintf("gossip key rotation stopped before it could %s: %v; the pool works with the keyring of epoch %d, run rotate-key again once the hosts are back", st.what, err, epoch)})
			return
		}
		s.log.Info("gossip key rotation step done", "step", st.what, "epoch", epoch)
	}
	s.log.Info("gossip key rotated", "primary", KeyFingerprint(fresh), "epoch", epoch, actor(r))
	writeJSON(w, http.StatusOK, api.GossipRotateResult{Primary: KeyFingerprint(fresh), Epoch: epoch})
}

// waitKeysHeld waits until the coordinator's member and every live host
// have applied epoch (and so the keyring committed at it).
func (s *Server) waitKeysHeld(r *http.Request, epoch uint64, deadline time.Time) error {
	for {
		var behind []string
		if s.keysApplied != nil && s.keysApplied() < epoch {
			behind = append(behind, "the coordinator")
		}
		if s.hosts != nil {
			for _, h := range s.hosts.Hosts() {
				live := h.State == api.StateAlive || h.State == api.StateSuspect
				if live && h.AppliedEpoch < epoch {
					behind = append(behind, h.Name)
				}
			}
		}
		if len(behind) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			sort.Strings(behind)
			return fmt.Errorf("not applied by %s", strings.Join(behind, ", "))
		}
		select {
		case <-r.Context().Done():
			return r.Context().Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
