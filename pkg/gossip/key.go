package gossip

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrKeyFilePermissions is returned for a key file that group or others
// can access: anyone who reads the key can join or forge pool traffic.
var ErrKeyFilePermissions = errors.New("key file is accessible by group or others; chmod 600 it")

// checkKey reports whether key has a length memberlist accepts (AES-128,
// AES-192 or AES-256).
func checkKey(key []byte) error {
	switch len(key) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("gossip key is %d bytes, want 16, 24 or 32", len(key))
}

// GenerateKey returns a fresh random 32-byte (AES-256) gossip key.
func GenerateKey() ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate gossip key: %w", err)
	}
	return key, nil
}

// LoadKeyFile reads a gossip key stored as base64 (surrounding whitespace
// ignored). It refuses a file with any group or other permission bits, as
// ssh does for private keys, rather than only the read bits: a writable key
// file lets others replace the cluster key.
func LoadKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load gossip key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load gossip key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("load gossip key %q: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("load gossip key %q: mode %04o: %w", path, perm, ErrKeyFilePermissions)
	}
	// A key file is a few dozen bytes; cap the read so a wrong path to a
	// huge file fails fast.
	const maxKeyFile = 1024
	raw, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("load gossip key %q: %w", path, err)
	}
	if len(raw) > maxKeyFile {
		return nil, fmt.Errorf("load gossip key %q: larger than %d bytes", path, maxKeyFile)
	}
	text := bytes.TrimSpace(raw)
	if len(text) == 0 {
		return nil, fmt.Errorf("load gossip key %q: file is empty", path)
	}
	key := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(key, text)
	if err != nil {
		return nil, fmt.Errorf("load gossip key %q: not valid base64: %w", path, err)
	}
	key = key[:n]
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("load gossip key %q: %w", path, err)
	}
	return key, nil
}

// WriteKeyFile stores key as base64 in a new file with mode 0600. It will
// not overwrite an existing file, so a typo cannot replace a cluster's key.
func WriteKeyFile(path string, key []byte) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("write gossip key %q: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write gossip key: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path) // do not leave a half-written key behind
		return fmt.Errorf("write gossip key %q: %w", path, err)
	}
	return nil
}
