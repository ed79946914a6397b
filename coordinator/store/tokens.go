package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

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
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).Put([]byte(HashSecret(secret)), buf)
	})
}

// LookupToken finds the token whose secret is given.
func (s *Store) LookupToken(secret string) (api.Token, error) {
	var t api.Token
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketTokens).Get([]byte(HashSecret(secret)))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &t)
	})
	return t, err
}

// Tokens lists every token (never their secrets, which are not kept).
func (s *Store) Tokens() ([]api.Token, error) {
	var out []api.Token
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).ForEach(func(_, v []byte) error {
			var t api.Token
			if err := json.Unmarshal(v, &t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	return out, err
}

// DeleteToken removes the token with the given ID.
func (s *Store) DeleteToken(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var t api.Token
			if json.Unmarshal(v, &t) == nil && t.ID == id {
				return c.Delete()
			}
		}
		return fmt.Errorf("token %q: %w", id, ErrNotFound)
	})
}
