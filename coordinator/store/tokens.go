package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/strata-infra/strata/pkg/api"
)

// HashSecret is how token secrets are kept: only their SHA-256. Secrets are
// 256 random bits, so a plain hash is enough (no dictionary to attack).
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// PutToken stores a token under the hash of its secret.
func (s *Store) PutToken(t api.Token, secret string) error {
	buf, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return s.backend.Write([]ObsOp{{NS: nsTokens, Key: HashSecret(secret), Val: buf}})
}

// LookupToken finds the token whose secret is given.
func (s *Store) LookupToken(secret string) (api.Token, error) {
	var t api.Token
	v, err := s.backend.Get(nsTokens, HashSecret(secret))
	if err != nil {
		return t, err
	}
	if v == nil {
		return t, ErrNotFound
	}
	return t, json.Unmarshal(v, &t)
}

// Tokens lists every token (never their secrets, which are not kept).
func (s *Store) Tokens() ([]api.Token, error) {
	var out []api.Token
	err := s.backend.Scan(nsTokens, "", func(_ string, v []byte) error {
		var t api.Token
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

// DeleteToken removes the token with the given ID.
func (s *Store) DeleteToken(id string) error {
	var key string
	err := s.backend.Scan(nsTokens, "", func(k string, v []byte) error {
		var t api.Token
		if key == "" && json.Unmarshal(v, &t) == nil && t.ID == id {
			key = k
		}
		return nil
	})
	if err != nil {
		return err
	}
	if key == "" {
		return fmt.Errorf("token %q: %w", id, ErrNotFound)
	}
	return s.backend.Write([]ObsOp{{NS: nsTokens, Key: key, Delete: true}})
}
