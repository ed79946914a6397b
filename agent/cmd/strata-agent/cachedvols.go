package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/strata-infra/strata/agent/config"
	"github.com/strata-infra/strata/agent/daemon"
	"github.com/strata-infra/strata/agent/reconcile"
	"github.com/strata-infra/strata/agent/storage/attach"
	"github.com/strata-infra/strata/agent/storage/cachedvol"
	"github.com/strata-infra/strata/agent/storage/dmcache"
	"github.com/strata-infra/strata/agent/storage/krbd"
	"github.com/strata-infra/strata/agent/storage/mappedsnap"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/rbd"
)

// checkEvery is how often the agent looks at its volume caches: a failed
// device, the dirty count it publishes.
const checkEvery = 10 * time.Second

// registerVolumeCaches runs this host's krbd volume manager when it has
// Ceph and the kernel has krbd: on start it finds every volume it had
// mapped again and reassembles their caches with their dirty blocks
// (retried until it succeeds), finishes interrupted detaches beside the
// rest, and checks the caches every checkEvery and cleans the caches of idle
// volumes (storage.cache.idle_clean_after). Each volume's state goes into the
// status report and the metrics.
func registerVolumeCaches(a *daemon.Agent, cfg *config.Config, log *slog.Logger) (*cachedvol.Manager, error) {
	s := cfg.Storage
	mp := &krbd.Mapper{}
	if !s.Enabled() {
		return nil, nil
	}
	if why := mp.Available(); why != "" {
		log.Info("no krbd volumes on this host", "reason", why)
		return nil, nil
	}
	mons, err := attach.ParseMonHost(s.Ceph.MonHost)
	if err != nil {
		return nil, fmt.Errorf("storage.ceph.mon_host: %w", err)
	}
	auth := krbd.Auth{User: s.Ceph.User}
	for _, m := range mons {
		auth.Monitors = append(auth.Monitors, m.String())
	}
	if auth.Key, err = keyringKey(s.Ceph.Keyring); err != nil {
		return nil, err
	}
	log = log.With("subsystem", "volumecache")
	m := &cachedvol.Manager{
		DM: dmcache.DMSetup{}, Mapper: mp, Auth: auth, Exclusive: true,
		StateDir: filepath.Join(cfg.StateDir, "volumes"), Log: log,
		FlushTimeout: s.Cache.FlushTimeout,
	}
	switch {
	case s.Cache.Device != "":
		m.Fast = cachedvol.BlockDevice(s.Cache.Device)
	case s.Cache.VolumeGroup != "":
		m.Fast = cachedvol.VolumeGroup{Name: s.Cache.VolumeGroup}
	}
	rep := &cacheReporter{m: m}
	// A flush's progress goes out at once (its status is the volume's on
	// the coordinator), not at the next check, which waits for the flush.
	m.Changed = func() {
		rep.refresh(context.Background())
		a.ReportSoon()
	}
	a.Background(func(ctx context.Context) {
		for {
			err := m.Reassemble(ctx)
			if err == nil {
				break
			}
			log.Error("recover volumes", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(checkEvery):
			}
		}
		// Detaches an agent killed mid-flush left finish beside the
		// checks (a flush takes up to its deadline); one that fails again
		// is the compute pass's to retry (attach.Host.Release).
		go func() {
			if err := m.ResumeDetaches(ctx); err != nil {
				log.Error("resume volume detaches", "err", err)
			}
		}()
		for {
			if err := m.Check(ctx); err != nil {
				log.Error("volume caches", "err", err)
			}
			if idle := s.Cache.IdleCleanAfter; idle > 0 {
				if err := m.CleanIdle(ctx, time.Now(), idle); err != nil {
					log.Error("idle cleaning", "err", err)
				}
			}
			rep.refresh(ctx)
			select {
			case <-ctx.Done():
				return
			case <-time.After(checkEvery):
			}
		}
	})
	a.Reporter(rep.report)
	a.Registry().MustRegister(m.Collector())
	// Snapshots of the volumes this host maps are this host's to take
	// (their exclusive lock refuses the storage controller): after the
	// storage controller made the volumes, before compute.
	rc := rbdConfig(s)
	snaps := mappedsnap.New(mappedsnap.Config{
		Host: cfg.Name, Kernel: m, Logger: log, Changed: a.ReportSoon,
		Connect: func() (mappedsnap.Pool, error) {
			conn, err := rbd.Connect(rc)
			if err != nil {
				return nil, err
			}
			return conn, nil
		},
	})
	a.Runner().Register(reconcile.OrderStorage+50, snaps)
	a.Reporter(snaps.Report)
	log.Info("krbd volumes", "cache_device", s.Cache.Device, "cache_volume_group", s.Cache.VolumeGroup, "state", m.StateDir)
	return m, nil
}

// cacheReporter keeps the last statuses read, so a report never waits on
// dmsetup.
type cacheReporter struct {
	m    *cachedvol.Manager
	mu   sync.Mutex
	last []api.VolumeCacheReport
}

func (c *cacheReporter) refresh(ctx context.Context) {
	sts, err := c.m.Statuses(ctx)
	if err != nil {
		return
	}
	recs, _ := c.m.Records()
	images := map[string]string{}
	for _, r := range recs {
		images[r.Volume] = r.Image.String()
	}
	out := make([]api.VolumeCacheReport, 0, len(sts))
	for _, s := range sts {
		out = append(out, s.Report(images[s.Volume]))
	}
	c.mu.Lock()
	c.last = out
	c.mu.Unlock()
}

func (c *cacheReporter) report(rep *api.HostReport) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rep.VolumeCaches = append(rep.VolumeCaches, c.last...)
}

// keyringKey is the base64 key of a keyring file's first "key =" line.
func keyringKey(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("ceph keyring: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.TrimSpace(k) == "key" {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("ceph keyring %s: no key line", path)
}
