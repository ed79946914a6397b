package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrDamaged marks a store file whose pages or records do not check out.
// The coordinator refuses to serve from it; a backup restores it.
var ErrDamaged = errors.New("store is damaged")

// maxCheckErrors bounds how many problems a damaged store's error lists.
const maxCheckErrors = 5

// openChecked opens the bbolt file and proves it whole before anything
// uses it: bbolt's page check (every page reachable or free, keys in
// order) and a decode of every record. A damaged file is an ErrDamaged
// error, never a panic: bbolt panics on some bad pages, and a bad
// pointer in the mmap faults; both are turned into errors here.
func openChecked(path string, o *bolt.Options) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				func() { defer func() { _ = recover() }(); db.Close() }()
			}
			db, err = nil, damaged(path, fmt.Errorf("bbolt: %s", strings.TrimPrefix(fmt.Sprint(r), "panic: ")))
		}
	}()
	db, err = bolt.Open(path, 0o600, o)
	if err != nil {
		if errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) || errors.Is(err, berrors.ErrVersionMismatch) {
			return nil, damaged(path, err)
		}
		return nil, fmt.Errorf("open store %q: %w", path, err)
	}
	if err := check(db); err != nil {
		db.Close()
		return nil, damaged(path, err)
	}
	return db, nil
}

func damaged(path string, why error) error {
	msg := strings.ReplaceAll(strings.ReplaceAll(why.Error(), "\n", "; "), "panic: ", "")
	if len(msg) > 400 {
		msg = msg[:400] + "…"
	}
	return fmt.Errorf("%w: %q (%s); it was not changed. Restore a backup into the data dir with `strata-coordinator restore --from FILE`, or move the file aside to start empty", ErrDamaged, path, msg)
}

// check runs bbolt's consistency check and decodes every JSON record.
func check(db *bolt.DB) error {
	return db.View(func(tx *bolt.Tx) error {
		var errs []error
		for e := range tx.Check() {
			if len(errs) < maxCheckErrors {
				errs = append(errs, e)
			}
		}
		if len(errs) > 0 {
			return errors.Join(errs...)
		}
		for _, name := range [][]byte{bucketResources, bucketDeltas, bucketTokens, bucketReports, bucketStatus} {
			b := tx.Bucket(name)
			if b == nil {
				continue
			}
			err := b.ForEach(func(k, v []byte) error {
				if !json.Valid(v) {
					return fmt.Errorf("bucket %s: record %q does not decode", name, k)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// Verified is what Verify found in a store file.
type Verified struct {
	Epoch   uint64
	History string
}

// Verify checks the store file at path (pages and records) without
// changing it.
func Verify(path string) (Verified, error) {
	db, err := openChecked(path, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return Verified{}, err
	}
	defer db.Close()
	var v Verified
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			return damaged(path, errors.New("no meta bucket: not a Strata store"))
		}
		v.Epoch = readEpoch(tx)
		v.History = string(tx.Bucket(bucketMeta).Get(keyHistory))
		return nil
	})
	return v, err
}
