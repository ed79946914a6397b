package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// fillStore makes a store with enough resources and deltas to span many
// data pages, and returns the ids of its leaf pages.
func fillStore(t *testing.T, path string) []int {
	t.Helper()
	s, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		put(t, s, project(fmt.Sprintf("p%03d", i), strings.Repeat("d", 100)))
	}
	var leaves []int
	err = s.backend.(*boltBackend).db.View(func(tx *bolt.Tx) error {
		for id := 2; ; id++ {
			pi, err := tx.Page(id)
			if err != nil || pi == nil {
				return err
			}
			if pi.Type == "leaf" {
				leaves = append(leaves, id)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if len(leaves) < 4 {
		t.Fatalf("only %d leaf pages", len(leaves))
	}
	return leaves
}

// TestCorruptStoreRefusedClearly damages the data pages of a real store
// file in several ways; each time Open refuses it with ErrDamaged and a
// message that says what to do, never a panic, and the file is left as
// it was for a post-mortem. A backup taken before restores it.
func TestCorruptStoreRefusedClearly(t *testing.T) {
	const pageSize = 4096
	damages := []struct {
		name string
		hit  func(page []byte, r *rand.Rand)
	}{
		{"whole page random", func(p []byte, r *rand.Rand) {
			for i := range p {
				p[i] = byte(r.Uint32())
			}
		}},
		{"records random, header kept", func(p []byte, r *rand.Rand) {
			for i := 16; i < len(p); i++ {
				p[i] = byte(r.Uint32())
			}
		}},
		{"values zeroed, header and index kept", func(p []byte, r *rand.Rand) {
			for i := len(p) / 2; i < len(p); i++ {
				p[i] = 0
			}
		}},
		{"page type flipped", func(p []byte, r *rand.Rand) { p[8] = 0x10 }}, // meta flag on a leaf
	}
	for _, d := range damages {
		t.Run(d.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "s.db")
			leaves := fillStore(t, path)
			good := filepath.Join(dir, "good.db")
			if _, err := BackupFile(path, good); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(1, uint64(len(d.name))))
			for _, id := range leaves {
				page := make([]byte, pageSize)
				if _, err := f.ReadAt(page, int64(id)*pageSize); err != nil {
					t.Fatal(err)
				}
				d.hit(page, r)
				if _, err := f.WriteAt(page, int64(id)*pageSize); err != nil {
					t.Fatal(err)
				}
			}
			f.Close()
			before, _ := os.ReadFile(path)
			st, err := Open(path, Options{})
			if err == nil {
				st.Close()
				t.Fatal("a store with damaged data pages opened")
			}
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "strata-coordinator restore") {
				t.Fatalf("error %q: want ErrDamaged saying how to restore", err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("refusing a damaged store changed the file")
			}
			if _, err := Verify(path); !errors.Is(err, ErrDamaged) {
				t.Errorf("Verify: %v, want ErrDamaged", err)
			}
			t.Logf("refused: %v", err)
			res, err := Restore(good, path)
			if err != nil {
				t.Fatal(err)
			}
			st = open(t, path, 0)
			defer st.Close()
			var n int
			_ = st.View(func(tx *Tx) error { rs, err := tx.List("project", "", false); n = len(rs); return err })
			if n != 300 || st.Epoch() != res.Epoch || st.History() != res.NewHistory || res.PreviousDB == "" {
				t.Fatalf("after restore: %d projects, epoch %d, history %s; result %+v", n, st.Epoch(), st.History(), res)
			}
		})
	}
}
