package gossip

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadKeyFile(t *testing.T) {
	key16 := bytes.Repeat([]byte{0x11}, 16)
	key24 := bytes.Repeat([]byte{0x22}, 24)
	key32 := bytes.Repeat([]byte{0x33}, 32)
	b64 := base64.StdEncoding.EncodeToString
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    []byte
		wantErr string // substring; empty means success
	}{
		{"aes128", b64(key16), 0o600, key16, ""},
		{"aes192 with whitespace", "  \n" + b64(key24) + "\r\n\t", 0o400, key24, ""},
		{"aes256", b64(key32) + "\n", 0o600, key32, ""},
		{"group readable", b64(key32), 0o640, nil, "mode 0640"},
		{"world readable", b64(key32), 0o604, nil, "accessible by group or others"},
		{"group writable", b64(key32), 0o620, nil, "mode 0620"},
		{"not base64", "not*base64!", 0o600, nil, "not valid base64"},
		{"wrong length", b64([]byte("short key")), 0o600, nil, "9 bytes, want 16, 24 or 32"},
		{"empty", "\n", 0o600, nil, "file is empty"},
		{"huge", strings.Repeat("A", 2000), 0o600, nil, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "gossip.key")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			got, err := LoadKeyFile(path)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("LoadKeyFile succeeded, want error containing %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("error %q: want it to contain %q and the path", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadKeyFile: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("key = %x, want %x", got, tt.want)
			}
		})
	}
}

func TestLoadKeyFilePermissionSentinel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(make([]byte, 16))), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyFile(path); !errors.Is(err, ErrKeyFilePermissions) {
		t.Fatalf("error %v, want ErrKeyFilePermissions", err)
	}
	if _, err := LoadKeyFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: error %v, want os.ErrNotExist", err)
	}
}

func TestGenerateAndWriteKeyFile(t *testing.T) {
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 32 {
		t.Fatalf("GenerateKey: %d bytes, want 32", len(key))
	}
	other, _ := GenerateKey()
	if bytes.Equal(key, other) {
		t.Fatal("two generated keys are equal")
	}
	path := filepath.Join(t.TempDir(), "gossip.key")
	if err := WriteKeyFile(path, key); err != nil {
		t.Fatalf("WriteKeyFile: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", perm)
	}
	got, err := LoadKeyFile(path)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("LoadKeyFile after WriteKeyFile: %x, %v", got, err)
	}
	if err := WriteKeyFile(path, other); !errors.Is(err, os.ErrExist) {
		t.Fatalf("overwrite: error %v, want os.ErrExist", err)
	}
	if err := WriteKeyFile(filepath.Join(t.TempDir(), "bad"), []byte("short")); err == nil {
		t.Fatal("WriteKeyFile accepted a 5-byte key")
	}
}
