package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKeyringKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "keyring")
	os.WriteFile(p, []byte("[client.strata]\n\tkey = QUJDREVGRw==\n\tcaps mon = \"profile rbd\"\n"), 0o600)
	if k, err := keyringKey(p); err != nil || k != "QUJDREVGRw==" {
		t.Errorf("keyringKey = %q, %v", k, err)
	}
	os.WriteFile(p, []byte("[client.strata]\n"), 0o600)
	if _, err := keyringKey(p); err == nil {
		t.Error("a keyring without a key line was accepted")
	}
}
