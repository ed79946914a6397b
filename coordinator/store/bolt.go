package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketMeta      = []byte("meta")
	bucketResources = []byte("resources")
	bucketDeltas    = []byte("deltas")
	bucketTokens    = []byte(nsTokens)
	bucketReports   = []byte(nsReports)
	bucketStatus    = []byte(nsStatus)

	keyEpoch = []byte("epoch")
	// keyHistory names this store's line of epochs. A restore starts a new
	// one, so agents can tell a restore (new history: take its full plan)
	// from an older copy of the same history (refuse it).
	keyHistory = []byte("history")
)

// boltBackend keeps a store in one bbolt file: the embedded default for a
// single coordinator.
type boltBackend struct {
	db *bolt.DB
}

// openBolt opens (checking it whole) or creates the bbolt file at path.
func openBolt(path string, noSync bool) (*boltBackend, error) {
	db, err := openChecked(path, &bolt.Options{Timeout: 5 * time.Second, NoSync: noSync})
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketResources, bucketDeltas, bucketTokens, bucketReports, bucketStatus} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if len(tx.Bucket(bucketMeta).Get(keyHistory)) == 0 {
			return tx.Bucket(bucketMeta).Put(keyHistory, []byte(newHistory()))
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store %q: %w", path, err)
	}
	return &boltBackend{db: db}, nil
}

func (b *boltBackend) Load() (*Loaded, error) {
	l := &Loaded{}
	err := b.db.View(func(tx *bolt.Tx) error {
		l.Epoch = readEpoch(tx)
		l.History = string(tx.Bucket(bucketMeta).Get(keyHistory))
		err := tx.Bucket(bucketResources).ForEach(func(k, v []byte) error {
			l.Resources = append(l.Resources, KV{Key: string(k), Val: bytes.Clone(v)})
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketDeltas).ForEach(func(k, v []byte) error {
			var d storedDelta
			if err := json.Unmarshal(v, &d); err != nil {
				return fmt.Errorf("decode delta %d: %w", binary.BigEndian.Uint64(k), err)
			}
			l.Deltas = append(l.Deltas, d)
			return nil
		})
	})
	return l, err
}

func (b *boltBackend) Commit(rec *Record) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		if readEpoch(tx) != rec.Base {
			return ErrEpochMoved
		}
		res := tx.Bucket(bucketResources)
		for _, kv := range rec.Puts {
			if err := res.Put([]byte(kv.Key), kv.Val); err != nil {
				return fmt.Errorf("put %q: %w", kv.Key, err)
			}
		}
		for _, k := range rec.Deletes {
			if err := res.Delete([]byte(k)); err != nil {
				return fmt.Errorf("delete %q: %w", k, err)
			}
		}
		deltas := tx.Bucket(bucketDeltas)
		if err := deltas.Put(u64(rec.Epoch), rec.Delta); err != nil {
			return fmt.Errorf("append delta %d: %w", rec.Epoch, err)
		}
		if err := tx.Bucket(bucketMeta).Put(keyEpoch, u64(rec.Epoch)); err != nil {
			return fmt.Errorf("write epoch %d: %w", rec.Epoch, err)
		}
		if rec.TrimTo > 0 {
			cut := u64(rec.TrimTo)
			c := deltas.Cursor()
			for k, _ := c.First(); k != nil && bytes.Compare(k, cut) <= 0; k, _ = c.First() {
				if err := c.Delete(); err != nil {
					return fmt.Errorf("trim delta log: %w", err)
				}
			}
		}
		return writeObs(tx, rec.Obs)
	})
}

func (b *boltBackend) Get(ns, key string) ([]byte, error) {
	var out []byte
	err := b.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte(ns)).Get([]byte(key)); v != nil {
			out = bytes.Clone(v)
		}
		return nil
	})
	return out, err
}

func (b *boltBackend) Scan(ns, prefix string, fn func(string, []byte) error) error {
	return b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(ns)).Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if err := fn(string(k), v); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *boltBackend) Write(ops []ObsOp) error {
	return b.db.Update(func(tx *bolt.Tx) error { return writeObs(tx, ops) })
}

func writeObs(tx *bolt.Tx, ops []ObsOp) error {
	for _, op := range ops {
		bk := tx.Bucket([]byte(op.NS))
		switch {
		case op.Prefix:
			c := bk.Cursor()
			p := []byte(op.Key)
			var keys [][]byte
			for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
				keys = append(keys, bytes.Clone(k))
			}
			for _, k := range keys {
				if err := bk.Delete(k); err != nil {
					return err
				}
			}
		case op.Delete:
			if err := bk.Delete([]byte(op.Key)); err != nil {
				return err
			}
		default:
			if err := bk.Put([]byte(op.Key), op.Val); err != nil {
				return fmt.Errorf("%s %q: %w", op.NS, op.Key, err)
			}
		}
	}
	return nil
}

func (b *boltBackend) Close() error { return b.db.Close() }

// backup writes a consistent copy of the whole file from one read
// transaction, while commits go on (bbolt's Tx.WriteTo).
func (b *boltBackend) backup(w io.Writer) (uint64, error) {
	var epoch uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		epoch = readEpoch(tx)
		_, err := tx.WriteTo(w)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	return epoch, nil
}

// size is the file's size in bytes, as bbolt sees it.
func (b *boltBackend) size() int64 {
	var n int64
	_ = b.db.View(func(tx *bolt.Tx) error {
		n = tx.Size()
		return nil
	})
	return n
}

func readEpoch(tx *bolt.Tx) uint64 {
	v := tx.Bucket(bucketMeta).Get(keyEpoch)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}
