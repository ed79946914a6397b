package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/strata-infra/strata/coordinator/config"
	"github.com/strata-infra/strata/coordinator/lease"
	"github.com/strata-infra/strata/coordinator/store"
)

// openStore opens the configured store and the leases that go with it:
// bbolt in the data dir with in-process leases, or etcd with etcd leases.
// The returned function closes what it opened.
func openStore(cfg *config.Config, log *slog.Logger) (*store.Store, lease.Leases, func(), error) {
	opts := store.Options{RetainDeltas: cfg.RetainDeltas}
	if cfg.Store != "etcd" {
		st, err := store.Open(filepath.Join(cfg.DataDir, StoreFile), opts)
		if err != nil {
			return nil, nil, nil, err
		}
		return st, lease.NewLocal(), func() { st.Close() }, nil
	}
	cl, err := clientv3.New(clientv3.Config{Endpoints: cfg.EtcdEndpoints, DialTimeout: 5 * time.Second,
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("etcd %v: %w", cfg.EtcdEndpoints, err)
	}
	st, err := store.OpenEtcd(cl, store.EtcdOptions{Prefix: cfg.EtcdPrefix, Timeout: 5 * time.Second,
		Logger: log.With("subsystem", "store")}, opts)
	if err != nil {
		cl.Close()
		return nil, nil, nil, fmt.Errorf("etcd %v: %w", cfg.EtcdEndpoints, err)
	}
	log.Info("store on etcd", "endpoints", cfg.EtcdEndpoints, "prefix", cfg.EtcdPrefix, "epoch", st.Epoch())
	leases := &lease.Etcd{Client: cl, Prefix: cfg.EtcdPrefix + "lease/", ID: cfg.Name}
	return st, leases, func() { st.Close(); cl.Close() }, nil
}
