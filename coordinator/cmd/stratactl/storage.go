package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/strata-infra/strata/coordinator/ctl"
	"github.com/strata-infra/strata/pkg/api"
	"github.com/strata-infra/strata/pkg/storagespec"
)

func volumeTypesCmd(g *globals) *cobra.Command {
	cmd, k := newKindCmd(g, "volumetypes", []string{"volumetype", "volume-types"}, "Volume types: a Ceph pool and how hosts attach it (admin)", false)
	var s api.VolumeTypeSpec
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a volume type", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return k.create(cmd, args[0], s) },
	}
	create.Flags().StringVar(&s.Pool, "pool", "volumes", "Ceph pool of the type's volumes")
	create.Flags().StringVar(&s.AttachMode, "attach-mode", "librbd", "librbd (qemu opens the image) or krbd (kernel block device)")
	create.Flags().StringVar(&s.CacheMode, "cache-mode", "none", "host SSD cache for krbd volumes: none, writeback or writethrough")
	create.Flags().IntVar(&s.CacheSizeMiB, "cache-size-mib", 0, "each volume's cache on its host's fast device (default 1024)")
	create.Flags().IntVar(&s.CacheHighWatermark, "cache-high-watermark", 0, "writeback: percent of the cache in use that starts writeback (default 50)")
	create.Flags().IntVar(&s.CacheLowWatermark, "cache-low-watermark", 0, "writeback: percent of the cache in use that stops writeback (default 45)")
	create.Flags().IntVar(&s.CacheMaxDirtySeconds, "cache-max-dirty-seconds", 0, "writeback: the longest a write stays on the host only (default 30)")
	create.Flags().IntVar(&s.CacheFlushTimeoutSeconds, "cache-flush-timeout-seconds", 0, "writeback: the longest a host flushes a volume's cache before it lets the image go (default: the host's storage.cache.flush_timeout)")
	list := listCmd(k, []string{"POOL", "ATTACH", "CACHE"}, func(_ api.Resource, s api.VolumeTypeSpec) []string {
		return []string{s.Pool, s.AttachMode, s.CacheMode}
	})
	cmd.AddCommand(create, list, k.deleteCmd())
	return cmd
}

func volumeSnapshotsCmd(g *globals) *cobra.Command {
	cmd, k := newKindCmd(g, "volumesnapshots", []string{"volumesnapshot", "snapshots", "snapshot"}, "Snapshots of a project's volumes", true)
	var s api.VolumeSnapshotSpec
	create := &cobra.Command{
		Use: "create NAME --volume VOLUME", Short: "Snapshot a volume", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return k.create(cmd, args[0], s) },
	}
	create.Flags().StringVar(&s.Volume, "volume", "", "the volume to snapshot")
	list := listCmd(k, []string{"VOLUME", "STATE"}, func(r api.Resource, s api.VolumeSnapshotSpec) []string {
		return []string{s.Volume, stateOf(r)}
	})
	cmd.AddCommand(create, list, k.deleteCmd())
	return cmd
}

func volumesCmd(g *globals) *cobra.Command {
	cmd, k := newKindCmd(g, "volumes", []string{"volume"}, "Block volumes of a project (RBD images)", true)
	var s api.VolumeSpec
	create := &cobra.Command{
		Use: "create NAME --size GIB [--image I | --snapshot S | --volume V]", Short: "Create a volume: empty, or a copy-on-write clone", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return k.create(cmd, args[0], s) },
	}
	f := create.Flags()
	f.IntVar(&s.SizeGiB, "size", 1, "size in GiB")
	f.StringVar(&s.Type, "type", "", "volume type (default: "+storagespec.DefaultType+")")
	f.StringVar(&s.Image, "image", "", "clone of this image in Ceph")
	f.StringVar(&s.Snapshot, "snapshot", "", "clone of this volume snapshot")
	f.StringVar(&s.Volume, "volume", "", "clone of this volume")
	list := listCmd(k, []string{"SIZE_GIB", "TYPE", "SOURCE", "STATE", "USED", "PARENT", "ATTACHED"}, func(r api.Resource, s api.VolumeSpec) []string {
		d := volumeDetail(r)
		used := ""
		if d.SizeBytes > 0 {
			used = fmt.Sprintf("%.1f%%", 100*float64(d.UsedBytes)/float64(d.SizeBytes))
		}
		return []string{fmt.Sprint(s.SizeGiB), storagespec.TypeOf(s), volumeSource(s), stateOf(r), used, d.Parent, fmt.Sprint(len(d.Watchers) > 0)}
	})
	show := &cobra.Command{
		Use: "show NAME", Short: "Show a volume: size, usage, parent, watchers and lock owner", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := k.get(cmd, args[0])
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.print(cmd, r, ctl.Table{})
			}
			var s api.VolumeSpec
			json.Unmarshal(r.Spec, &s)
			d := volumeDetail(r)
			fs := fields{{"name", r.Project + "/" + r.Name}, {"epoch", fmt.Sprint(r.Epoch)}, {"state", stateOf(r)},
				{"size", fmt.Sprintf("%d GiB", s.SizeGiB)}, {"type", storagespec.TypeOf(s)}, {"source", volumeSource(s)},
				{"flatten", fmt.Sprint(s.Flatten)}}
			if r.Status != nil {
				if r.Status.Message != "" {
					fs = append(fs, [2]string{"message", r.Status.Message})
				}
				fs = append(fs, fields{{"controller", d.Controller}, {"rbd image", d.Pool + "/" + d.RBDImage},
					{"used", fmt.Sprintf("%d of %d bytes", d.UsedBytes, d.SizeBytes)}, {"parent", d.Parent},
					{"clone depth", fmt.Sprint(d.Depth)}, {"snapshots", strings.Join(d.Snapshots, ", ")},
					{"watchers", strings.Join(d.Watchers, ", ")}, {"lock owners", strings.Join(d.LockOwners, ", ")}}...)
			}
			fs.print(cmd.OutOrStdout())
			return nil
		},
	}
	var size int
	extend := modifyCmd(k, "extend NAME --size GIB", "Grow a volume (online when attached)", cobra.ExactArgs(1), func(s *api.VolumeSpec, _ []string) error {
		s.SizeGiB = size
		return nil
	})
	extend.Flags().IntVar(&size, "size", 0, "new size in GiB (never smaller)")
	flatten := modifyCmd(k, "flatten NAME", "Copy a clone's parent data in, so it no longer depends on its source", cobra.ExactArgs(1), func(s *api.VolumeSpec, _ []string) error {
		s.Flatten = true
		return nil
	})
	cmd.AddCommand(create, list, show, extend, flatten, k.deleteCmd())
	return cmd
}

func volumeSource(s api.VolumeSpec) string {
	switch {
	case s.Image != "":
		return "image " + s.Image
	case s.Snapshot != "":
		return "snapshot " + s.Snapshot
	case s.Volume != "":
		return "volume " + s.Volume
	}
	return "empty"
}

func volumeDetail(r api.Resource) api.VolumeDetail {
	var d api.VolumeDetail
	if r.Status != nil {
		json.Unmarshal(r.Status.Detail, &d)
	}
	return d
}

func stateOf(r api.Resource) string {
	if r.Status == nil {
		return "pending"
	}
	if r.Status.Epoch < r.Epoch {
		return r.Status.State + " (converging)"
	}
	return r.Status.State
}
