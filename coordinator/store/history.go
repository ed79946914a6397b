package store

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

func newHistory() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// JumpEpoch moves the cluster epoch to at least min, as one commit with an
// empty delta. After a restore, hosts that applied epochs of the history
// before it may be ahead of the restored store: the epoch jumps past
// them, so epochs never go back on any host and every host's next plan is
// a full one. It returns the epoch after the call.
func (s *Store) JumpEpoch(min uint64) (uint64, error) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	for try := 1; ; try++ {
		t, epoch := s.snapshot()
		if epoch >= min {
			return epoch, nil
		}
		d := storedDelta{Epoch: min, Base: epoch, Changes: []storedChange{}}
		rec, err := s.record(d)
		if err == nil {
			err = s.backend.Commit(rec)
		}
		if errors.Is(err, ErrEpochMoved) && try < maxCommitTries {
			if err := s.catchUp(); err != nil {
				return 0, fmt.Errorf("jump epoch to %d: %w", min, err)
			}
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("jump epoch to %d: %w", min, err)
		}
		s.publish(t, d)
		s.notify(d)
		s.wake()
		return min, nil
	}
}

// Backup writes a consistent copy of the whole store to w while commits
// go on. It returns the epoch the copy holds. Only the bbolt backend has
// one; an etcd cluster is backed up with etcd's own snapshots.
func (s *Store) Backup(w io.Writer) (uint64, error) {
	b, ok := s.backend.(*boltBackend)
	if !ok {
		return 0, errors.New("backup: this store is on etcd; back up the etcd cluster with etcdctl snapshot save")
	}
	return b.backup(w)
}

// BackupFile copies the store at path (a coordinator that is not
// running) to out.
func BackupFile(path, out string) (uint64, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, fmt.Errorf("open %q read-only (is the coordinator running? then back up over the API): %w", path, err)
	}
	defer db.Close()
	b := &boltBackend{db: db}
	return writeFileAtomic(out, b.backup)
}

func writeFileAtomic(out string, write func(io.Writer) (uint64, error)) (uint64, error) {
	f, err := os.CreateTemp(filepath.Dir(out), ".backup-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	epoch, err := write(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o600)
	}
	if err == nil {
		err = os.Rename(f.Name(), out)
	}
	return epoch, err
}

// RestoreResult says what Restore did.
type RestoreResult struct {
	Epoch       uint64 // the restored store's epoch
	OldHistory  string // the backup's history
	NewHistory  string // the restored store's
	PreviousDB  string // where the replaced store was moved ("" if none)
	BackupBytes int64
}

// Restore replaces the store at path (its coordinator stopped) with the
// backup at from. The backup is checked first (a damaged one is refused
// and nothing changes), given a new history ID and an empty delta log, so
// hosts from before the restore take a full plan, and moved into place
// atomically; the replaced store is kept beside it.
func Restore(from, path string) (RestoreResult, error) {
	var res RestoreResult
	if f, err := os.Open(path); err == nil {
		// bbolt holds an exclusive flock on an open store.
		lerr := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		f.Close()
		if lerr != nil {
			return res, fmt.Errorf("store %q is in use (stop the coordinator first): %w", path, lerr)
		}
	}
	tmp := path + ".restoring"
	src, err := os.Open(from)
	if err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	dst, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		src.Close()
		return res, fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(tmp)
	res.BackupBytes, err = io.Copy(dst, src)
	src.Close()
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, fmt.Errorf("restore: copy %q: %w", from, err)
	}
	st, err := openBolt(tmp, false)
	if err != nil {
		return res, fmt.Errorf("restore from %q refused: %w", from, err)
	}
	res.NewHistory = newHistory()
	err = st.db.Update(func(tx *bolt.Tx) error {
		res.OldHistory, res.Epoch = string(tx.Bucket(bucketMeta).Get(keyHistory)), readEpoch(tx)
		if err := tx.DeleteBucket(bucketDeltas); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketDeltas); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyHistory, []byte(res.NewHistory))
	})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, fmt.Errorf("restore: prepare %q: %w", tmp, err)
	}
	if _, err := os.Stat(path); err == nil {
		res.PreviousDB = fmt.Sprintf("%s.before-restore-%s", path, time.Now().UTC().Format("20060102T150405Z"))
		if err := os.Rename(path, res.PreviousDB); err != nil {
			return res, fmt.Errorf("restore: keep the replaced store: %w", err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return res, nil
}
