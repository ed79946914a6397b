package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	coordapi "github.com/strata-infra/strata/coordinator/api"
	"github.com/strata-infra/strata/coordinator/config"
	"github.com/strata-infra/strata/coordinator/membership"
	"github.com/strata-infra/strata/coordinator/recovery"
	"github.com/strata-infra/strata/coordinator/registry"
	"github.com/strata-infra/strata/coordinator/scheduler"
	"github.com/strata-infra/strata/coordinator/store"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/gossip"
	"github.com/strata-infra/strata/pkg/logging"
	"github.com/strata-infra/strata/pkg/sdnotify"
)

// AdminTokenFile is the name, under the data dir, of the first admin token.
const AdminTokenFile = "admin.token"

func run(ctx context.Context, cfg *config.Config) error {
	log, err := logging.New(os.Stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	st, leases, closeStore, err := openStore(cfg, log)
	if err != nil {
		return err
	}
	defer closeStore()
	if err := ensureAdminToken(st, cfg.DataDir, log); err != nil {
		return err
	}

	member, err := startGossip(cfg, st, log)
	if err != nil {
		return err
	}
	defer member.Shutdown()
	gsync := &membership.Sync{Store: st, Member: member, Log: log.With("subsystem", "gossip")}
	if err := gsync.Once(); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	kinds := registry.Default()
	kinds.Scheduler = scheduler.New(cfg.SchedulerConfig())
	kinds.Settings.VNIMin, kinds.Settings.VNIMax, _ = cfg.VNIs() // validated at load
	kinds.Settings.UnderlayMTU = cfg.UnderlayMTU
	srv := coordapi.New(coordapi.Options{
		Store: st, Registry: kinds, Hosts: membership.View{Peers: member},
		Logger: log.With("subsystem", "api"), MaxWait: cfg.MaxWait, Metrics: reg,
		KeysApplied: gsync.Applied,
	})

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go membership.FeedScheduler(ctx, member, kinds.Scheduler, 200*time.Millisecond)
	go st.Follow(ctx) // other coordinators' commits (etcd); nothing on bbolt
	go gsync.Run(ctx)
	if cfg.RecoveryGrace > 0 {
		// Acts only while it holds the recovery lease: always on a
		// single coordinator, one at a time among HA coordinators.
		rc := recovery.New(recovery.Config{Grace: cfg.RecoveryGrace, FenceExpiry: cfg.FenceExpiry, Retention: cfg.FenceRetention}, st, kinds,
			membership.View{Peers: member}.Hosts, leases, log.With("subsystem", "recovery"))
		go rc.Run(ctx)
	}
	errc := make(chan error, len(cfg.Listen)+1)
	var servers []*http.Server
	var tc *tls.Config
	if cfg.InsecureHTTP {
		log.Warn("API serves plain HTTP (insecure_http), on loopback only")
	} else if tc, err = apiTLS(cfg, log); err != nil {
		return err
	}
	for _, addr := range cfg.Listen {
		ln, err := listenAPI(addr, cfg.MaxConns, tc)
		if err != nil {
			return err
		}
		hs := apiServer(srv)
		servers = append(servers, hs)
		go func() { errc <- hs.Serve(ln) }()
		log.Info("API listening", "addr", addr, "tls", tc != nil)
	}
	if cfg.MetricsAddr != "" {
		ms := &http.Server{Addr: cfg.MetricsAddr, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, ms)
		go func() { errc <- ms.ListenAndServe() }()
	}

	sdnotify.Ready(fmt.Sprintf("serving at epoch %d", st.Epoch()))
	go sdnotify.Watchdog(ctx, log, func() bool { return true })
	log.Info("coordinator ready", "epoch", st.Epoch(), "api", cfg.APIURL, "gossip", cfg.GossipBind)

	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("server failed", "err", err)
		}
	}
	sdnotify.Stopping()
	log.Info("coordinator stopping")
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, hs := range servers {
		_ = hs.Shutdown(shutCtx)
	}
	_ = member.Leave(2 * time.Second)
	return nil
}

func startGossip(cfg *config.Config, st *store.Store, log *slog.Logger) (*gossip.Member, error) {
	gc := gossip.Config{
		Name: cfg.Name, Profile: cfg.GossipProfile, Logger: log.With("subsystem", "gossip"),
		Meta: gossip.Meta{Role: gossip.RoleCoordinator, APIAddr: cfg.APIURL},
	}
	if err := gc.SetAddrs(cfg.GossipBind, cfg.GossipAdvertise); err != nil {
		return nil, err
	}
	keys, primary, err := gossipKeyring(cfg, st, log)
	if err != nil {
		return nil, err
	}
	gc.Key = primary
	for _, k := range keys {
		if !bytes.Equal(k, primary) {
			gc.ExtraKeys = append(gc.ExtraKeys, k)
		}
	}
	// Admit only registered hosts from the first packet on.
	err = st.View(func(tx *store.Tx) error {
		rs, err := tx.List("hostidentity", "", false)
		gc.Identities = gossip.Identities(rs)
		return err
	})
	if err != nil {
		return nil, err
	}
	m, err := gossip.New(gc)
	if err != nil {
		return nil, err
	}
	// Bind our gossip name to our address before anyone hears it, so that
	// agents and the other coordinators admit this coordinator under its
	// name, and no member holding only the key can take it.
	_, _, err = st.Update(func(tx *store.Tx) error {
		_, err := registry.RegisterCoordinator(tx, cfg.Name, m.LocalAddr().Addr())
		return err
	})
	if err != nil {
		m.Shutdown()
		return nil, fmt.Errorf("register coordinator %q in gossip: %w", cfg.Name, err)
	}
	if len(cfg.Join) > 0 {
		// Agents join us too, so a coordinator that finds no peer yet is fine.
		if n, err := m.Join(cfg.Join); err != nil {
			log.Warn("gossip join found no peer yet", "join", cfg.Join, "err", err)
		} else {
			log.Info("joined gossip pool", "contacted", n)
		}
	}
	return m, nil
}

// gossipKeyring is the pool's keyring: the committed one (it may have been
// rotated since the key file was written), else the key file's key,
// committed now so agents get it in their plans and rotation can start.
func gossipKeyring(cfg *config.Config, st *store.Store, log *slog.Logger) ([][]byte, []byte, error) {
	var spec api.GossipKeyringSpec
	err := st.View(func(tx *store.Tx) error {
		r, err := tx.Get(api.Key{Kind: "gossipkeyring", Name: api.GossipKeyringName})
		if err != nil {
			return err
		}
		return json.Unmarshal(r.Spec, &spec)
	})
	if err == nil {
		return gossip.DecodeKeyring(spec)
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, nil, err
	}
	key, err := gossip.LoadKeyFile(cfg.GossipKeyFile)
	if err != nil {
		return nil, nil, err
	}
	buf, _ := json.Marshal(gossip.EncodeKeyring([][]byte{key}, key))
	if _, _, err := st.Update(func(tx *store.Tx) error {
		_, _, err := tx.Put(api.Resource{Kind: "gossipkeyring", Name: api.GossipKeyringName, Spec: buf})
		return err
	}); err != nil {
		return nil, nil, fmt.Errorf("store gossip keyring: %w", err)
	}
	log.Info("gossip keyring stored from the key file", "primary", coordapi.KeyFingerprint(key))
	return [][]byte{key}, key, nil
}

// ensureAdminToken issues the first admin token at first start and writes
// it where only root can read it. The store keeps only its hash.
func ensureAdminToken(st *store.Store, dir string, log *slog.Logger) error {
	toks, err := st.Tokens()
	if err != nil {
		return err
	}
	for _, t := range toks {
		if t.Role == api.RoleAdmin {
			return nil
		}
	}
	// Write the file before storing the hash: a crash in between leaves
	// no admin in the store, and the next start issues a new one.
	secret, err := coordapi.NewSecret(api.RoleAdmin)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, AdminTokenFile)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	tok := api.Token{ID: "admin", Name: "admin", Role: api.RoleAdmin, Created: time.Now().UTC()}
	if err := st.PutToken(tok, secret); err != nil {
		return fmt.Errorf("store admin token: %w", err)
	}
	log.Info("admin token created", "file", path)
	return nil
}
