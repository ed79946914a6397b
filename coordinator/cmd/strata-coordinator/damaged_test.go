package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/internal/testenv"
	"github.com/strata-infra/strata/pkg/api"
)

// TestDamagedStoreExitsClearly starts the real strata-coordinator on a
// store whose data pages are damaged: it must exit at once with an error
// naming the file and saying how to restore it, never a panic or a stack
// trace, and leave the file as it was.
func TestDamagedStoreExitsClearly(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "strata-coordinator")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(data, StoreFile)
	st, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		spec, _ := json.Marshal(api.ProjectSpec{Description: strings.Repeat("d", 100)})
		if _, _, err := st.Update(func(tx *store.Tx) error {
			_, _, err := tx.Put(api.Resource{Kind: "project", Name: fmt.Sprintf("p%03d", i), Spec: spec})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	// Zero the second half of every leaf page: values gone, headers kept.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var leaves []int
	pageSize := db.Info().PageSize
	_ = db.View(func(tx *bolt.Tx) error {
		for id := 2; int64(id*pageSize) < tx.Size(); id++ {
			pi, err := tx.Page(id)
			if err == nil && pi != nil && pi.Type == "leaf" {
				leaves = append(leaves, id)
			}
		}
		return nil
	})
	db.Close()
	if len(leaves) < 4 {
		t.Fatalf("only %d leaf pages", len(leaves))
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range leaves {
		half := make([]byte, pageSize/2)
		if _, err := f.WriteAt(half, int64(id*pageSize+pageSize/2)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	before, _ := os.ReadFile(path)

	ctx, cancel := context.WithTimeout(context.Background(), testenv.Scale(30*time.Second))
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--config=", "--data-dir", data, "--listen", "127.0.0.1:0",
		"--api-url", "https://127.0.0.1:7070", "--gossip-bind", "127.0.0.1:0", "--gossip-key-file", filepath.Join(dir, "none.key"))
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the coordinator did not exit on a damaged store; output:\n%s", out)
	}
	if err == nil {
		t.Fatalf("the coordinator served a damaged store; output:\n%s", out)
	}
	s := string(out)
	for _, bad := range []string{"panic:", "goroutine ", "runtime."} {
		if strings.Contains(s, bad) {
			t.Fatalf("output has %q (a panic or stack trace):\n%s", bad, s)
		}
	}
	for _, want := range []string{"store is damaged", path, "strata-coordinator restore"} {
		if !strings.Contains(s, want) {
			t.Errorf("output does not say %q:\n%s", want, s)
		}
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("refusing the damaged store changed the file")
	}
	t.Logf("exit %v: %s", err, strings.TrimSpace(s))
}
