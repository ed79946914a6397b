package gossip

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrNoKey refuses a member without a gossip key: an unencrypted pool
// admits anyone who can reach the port.
var ErrNoKey = errors.New("no gossip key: every member needs the cluster key (gossip key_file); for example: head -c 32 /dev/urandom | base64 > gossip.key; chmod 600 gossip.key")

// SetKeys makes keys the member's keyring with primary the key it
// encrypts with; every key decrypts. Rotation is three such calls across
// the pool: install the new key beside the old, make it primary, drop the
// old. Keys not in keys are removed last, so traffic never fails between.
func (m *Member) SetKeys(keys [][]byte, primary []byte) error {
	m.life.RLock()
	defer m.life.RUnlock()
	if m.closed {
		return ErrShutdown
	}
	found := false
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return fmt.Errorf("set gossip keys of %q: %w", m.name, err)
		}
		found = found || bytes.Equal(k, primary)
	}
	if !found {
		return fmt.Errorf("set gossip keys of %q: the primary key is not in the keyring", m.name)
	}
	kr := m.keyring
	for _, k := range keys {
		if err := kr.AddKey(k); err != nil {
			return fmt.Errorf("set gossip keys of %q: %w", m.name, err)
		}
	}
	if err := kr.UseKey(primary); err != nil {
		return fmt.Errorf("set gossip keys of %q: %w", m.name, err)
	}
	for _, old := range kr.GetKeys() {
		keep := false
		for _, k := range keys {
			keep = keep || bytes.Equal(k, old)
		}
		if !keep {
			if err := kr.RemoveKey(old); err != nil {
				return fmt.Errorf("set gossip keys of %q: %w", m.name, err)
			}
		}
	}
	return nil
}

// Keys returns the member's keyring and its primary key.
func (m *Member) Keys() (keys [][]byte, primary []byte) {
	return m.keyring.GetKeys(), m.keyring.GetPrimaryKey()
}
