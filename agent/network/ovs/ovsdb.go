package ovs

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
	"github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// External IDs Strata sets on what it makes in OVSDB. A bridge or port is
// Strata's only when OwnerKey says so; nothing else is changed or deleted.
const (
	OwnerKey   = "strata-owner"
	OwnerValue = "strata"
	genKey     = "strata-flow-gen"  // generation of the installed flows
	hashKey    = "strata-flow-hash" // hash of the installed flow set
	kindKey    = "strata-kind"      // "network" or "tunnel"
)

// db is the driver's OVSDB connection: a libovsdb client over the tables
// in model.go with a monitored cache, reconnecting (and re-monitoring) when
// ovsdb-server restarts.
type db struct {
	c client.Client
}

func dialDB(ctx context.Context, endpoint string) (*db, error) {
	dbm, err := DatabaseModel()
	if err != nil {
		return nil, err
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 50 * time.Millisecond
	bo.MaxInterval = time.Second
	bo.MaxElapsedTime = 0 // keep trying: ovsdb-server comes back
	c, err := client.NewOVSDBClient(dbm, client.WithEndpoint(endpoint), client.WithReconnect(5*time.Second, bo))
	if err != nil {
		return nil, err
	}
	if err := c.Connect(ctx); err != nil {
		return nil, fmt.Errorf("connect to ovsdb %s: %w", endpoint, err)
	}
	if _, err := c.Monitor(ctx, monitor(c)); err != nil {
		c.Close()
		return nil, fmt.Errorf("monitor ovsdb %s: %w", endpoint, err)
	}
	return &db{c: c}, nil
}

// monitor asks for exactly the modelled columns: monitoring a whole table
// would bring columns the models lack (next_cfg, statistics...), and
// libovsdb drops an update that names a column it cannot map.
func monitor(c client.Client) *client.Monitor {
	o, b, p, i := &OpenvSwitch{}, &Bridge{}, &Port{}, &Interface{}
	return c.NewMonitor(
		client.WithTable(o, &o.Bridges, &o.OtherConfig, &o.ExternalIDs),
		client.WithTable(b, &b.Name, &b.Ports, &b.FailMode, &b.DatapathType, &b.Protocols, &b.OtherConfig, &b.ExternalIDs),
		client.WithTable(p, &p.Name, &p.Interfaces, &p.Tag, &p.ExternalIDs),
		client.WithTable(i, &i.Name, &i.Type, &i.Options, &i.Ofport, &i.Error, &i.ExternalIDs),
	)
}

func (d *db) close() { d.c.Close() }

// snapshot is the part of the database the driver reads, from the cache.
type snapshot struct {
	root   OpenvSwitch
	bridge *Bridge // the integration bridge, nil when missing
	ports  map[string]Port
	ifaces map[string]Interface // by name
}

func (d *db) read(ctx context.Context, bridge string) (snapshot, error) {
	var roots []OpenvSwitch
	var brs []Bridge
	var ports []Port
	var ifs []Interface
	for _, l := range []any{&roots, &brs, &ports, &ifs} {
		if err := d.c.List(ctx, l); err != nil {
			return snapshot{}, fmt.Errorf("read ovsdb: %w", err)
		}
	}
	if len(roots) != 1 {
		return snapshot{}, fmt.Errorf("ovsdb has %d Open_vSwitch rows, want 1 (run ovs-vsctl init)", len(roots))
	}
	s := snapshot{root: roots[0], ports: map[string]Port{}, ifaces: map[string]Interface{}}
	for i := range brs {
		if brs[i].Name == bridge {
			s.bridge = &brs[i]
		}
	}
	if s.bridge != nil {
		on := map[string]bool{}
		for _, u := range s.bridge.Ports {
			on[u] = true
		}
		for _, p := range ports {
			if on[p.UUID] {
				s.ports[p.Name] = p
			}
		}
	}
	for _, i := range ifs {
		s.ifaces[i.Name] = i
	}
	return s, nil
}

// wantBridge is the integration bridge's configuration.
type wantBridge struct {
	name     string
	datapath string // "system" or "netdev"
	dpid     string // 16 hex digits, pinned so the OpenFlow connection survives port changes
}

// wantPort is one port Strata wants on the integration bridge.
type wantPort struct {
	name    string
	ifType  string // "" (a system device: a veth or tap), "vxlan", "gre"
	options map[string]string
	tag     int // local VLAN of a network's port; 0 for tunnels
	kind    string
	vni     uint32   // a network's port: its network
	macs    []string // a local port: the MACs behind it
}

// ids are the external_ids the driver keeps on the port.
func (w wantPort) ids() map[string]string {
	ids := map[string]string{OwnerKey: OwnerValue, kindKey: w.kind}
	if w.vni > 0 {
		ids[vniKey] = strconv.FormatUint(uint64(w.vni), 10)
	}
	if len(w.macs) > 0 {
		ids[macsKey] = strings.Join(w.macs, ",")
	}
	return ids
}

// tx builds one OVSDB transaction.
type tx struct {
	d   *db
	ops []ovsdb.Operation
	n   int
}

func (t *tx) add(ops []ovsdb.Operation, err error) error {
	if err != nil {
		return err
	}
	t.ops = append(t.ops, ops...)
	return nil
}

func (t *tx) named(prefix string) string {
	t.n++
	return prefix + strconv.Itoa(t.n)
}

func owned(ids map[string]string) bool { return ids[OwnerKey] == OwnerValue }

// ensureBridge adds the bridge (with its internal port) or fixes its
// settings; it returns the bridge's UUID or named UUID.
func (t *tx) ensureBridge(s snapshot, w wantBridge) (string, error) {
	secure := "secure"
	other := map[string]string{"datapath-id": w.dpid, "disable-in-band": "true"}
	protos := []string{"OpenFlow13"}
	if b := s.bridge; b != nil {
		if !owned(b.ExternalIDs) {
			return "", fmt.Errorf("bridge %q exists and is not Strata's (external_ids:%s)", w.name, OwnerKey)
		}
		nb := *b
		var fields []any
		if b.FailMode == nil || *b.FailMode != secure {
			nb.FailMode = &secure
			fields = append(fields, &nb.FailMode)
		}
		if b.DatapathType != w.datapath {
			nb.DatapathType = w.datapath
			fields = append(fields, &nb.DatapathType)
		}
		if !slices.Equal(b.Protocols, protos) {
			nb.Protocols = protos
			fields = append(fields, &nb.Protocols)
		}
		if b.OtherConfig["datapath-id"] != w.dpid || b.OtherConfig["disable-in-band"] != "true" {
			nb.OtherConfig = maps.Clone(b.OtherConfig)
			if nb.OtherConfig == nil {
				nb.OtherConfig = map[string]string{}
			}
			maps.Copy(nb.OtherConfig, other)
			fields = append(fields, &nb.OtherConfig)
		}
		if len(fields) > 0 {
			if err := t.add(t.d.c.Where(&nb).Update(&nb, fields...)); err != nil {
				return "", fmt.Errorf("update bridge %q: %w", w.name, err)
			}
		}
		return b.UUID, nil
	}
	iface := &Interface{UUID: t.named("iface"), Name: w.name, Type: "internal", ExternalIDs: map[string]string{OwnerKey: OwnerValue}}
	port := &Port{UUID: t.named("port"), Name: w.name, Interfaces: []string{iface.UUID}, ExternalIDs: map[string]string{OwnerKey: OwnerValue}}
	br := &Bridge{
		UUID: t.named("bridge"), Name: w.name, Ports: []string{port.UUID}, FailMode: &secure,
		DatapathType: w.datapath, Protocols: protos, OtherConfig: other,
		ExternalIDs: map[string]string{OwnerKey: OwnerValue},
	}
	for _, m := range []model.Model{iface, port, br} {
		if err := t.add(t.d.c.Create(m)); err != nil {
			return "", err
		}
	}
	root := s.root
	err := t.add(t.d.c.Where(&root).Mutate(&root, model.Mutation{Field: &root.Bridges, Mutator: ovsdb.MutateOperationInsert, Value: []string{br.UUID}}))
	return br.UUID, err
}

// ensurePort adds or fixes one port of the bridge.
func (t *tx) ensurePort(s snapshot, bridgeUUID string, w wantPort) error {
	ids := w.ids()
	var tag *int
	if w.tag > 0 {
		tag = &w.tag
	}
	if p, ok := s.ports[w.name]; ok {
		// An instance's tap is libvirt's port, named by Strata: adopted
		// by adding Strata's IDs to libvirt's.
		if !owned(p.ExternalIDs) && w.kind != kindTap {
			return fmt.Errorf("port %q exists and is not Strata's", w.name)
		}
		np := p
		var fields []any
		if (p.Tag == nil) != (tag == nil) || (tag != nil && *p.Tag != *tag) {
			np.Tag = tag
			fields = append(fields, &np.Tag)
		}
		if !hasAll(p.ExternalIDs, ids) {
			np.ExternalIDs = maps.Clone(p.ExternalIDs)
			if np.ExternalIDs == nil {
				np.ExternalIDs = map[string]string{}
			}
			maps.Copy(np.ExternalIDs, ids)
			fields = append(fields, &np.ExternalIDs)
		}
		if len(fields) > 0 {
			if err := t.add(t.d.c.Where(&np).Update(&np, fields...)); err != nil {
				return err
			}
		}
		if w.kind == kindTap || w.kind == kindLocal {
			return nil // the device is someone else's: only the port is ours to tag
		}
		i, ok := s.ifaces[w.name]
		if ok && (i.Type != w.ifType || !maps.Equal(i.Options, w.options)) {
			ni := i
			ni.Type, ni.Options = w.ifType, w.options
			return t.add(t.d.c.Where(&ni).Update(&ni, &ni.Type, &ni.Options))
		}
		return nil
	}
	iface := &Interface{UUID: t.named("iface"), Name: w.name, Type: w.ifType, Options: w.options, ExternalIDs: ids}
	port := &Port{UUID: t.named("port"), Name: w.name, Interfaces: []string{iface.UUID}, Tag: tag, ExternalIDs: ids}
	if err := t.add(t.d.c.Create(iface)); err != nil {
		return err
	}
	if err := t.add(t.d.c.Create(port)); err != nil {
		return err
	}
	br := &Bridge{UUID: bridgeUUID}
	return t.add(t.d.c.Where(br).Mutate(br, model.Mutation{Field: &br.Ports, Mutator: ovsdb.MutateOperationInsert, Value: []string{port.UUID}}))
}

// deletePort removes a port from the bridge; its Interface row goes with it.
// hasAll reports whether have holds every key of want with its value.
func hasAll(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func (t *tx) deletePort(bridgeUUID string, p Port) error {
	pp := p
	if err := t.add(t.d.c.Where(&pp).Delete()); err != nil {
		return err
	}
	br := &Bridge{UUID: bridgeUUID}
	return t.add(t.d.c.Where(br).Mutate(br, model.Mutation{Field: &br.Ports, Mutator: ovsdb.MutateOperationDelete, Value: []string{p.UUID}}))
}

// setBridgeIDs sets external IDs of the bridge (the flow generation).
func (t *tx) setBridgeIDs(b Bridge, kv map[string]string) error {
	nb := b
	nb.ExternalIDs = maps.Clone(b.ExternalIDs)
	maps.Copy(nb.ExternalIDs, kv)
	return t.add(t.d.c.Where(&nb).Update(&nb, &nb.ExternalIDs))
}

func (t *tx) commit(ctx context.Context) error {
	if len(t.ops) == 0 {
		return nil
	}
	res, err := t.d.c.Transact(ctx, t.ops...)
	if err != nil {
		return fmt.Errorf("ovsdb transaction: %w", err)
	}
	if _, err := ovsdb.CheckOperationResults(res, t.ops); err != nil {
		return fmt.Errorf("ovsdb transaction: %w", err)
	}
	return nil
}

// clearFlowRestoreWait lets ovs-vswitchd forward again after a restart
// once Strata's flows are back (other_config:flow-restore-wait).
func (d *db) clearFlowRestoreWait(ctx context.Context, root OpenvSwitch) (bool, error) {
	if _, ok := root.OtherConfig["flow-restore-wait"]; !ok {
		return false, nil
	}
	r := root
	ops, err := d.c.Where(&r).Mutate(&r, model.Mutation{Field: &r.OtherConfig, Mutator: ovsdb.MutateOperationDelete, Value: []string{"flow-restore-wait"}})
	if err != nil {
		return false, err
	}
	t := &tx{d: d, ops: ops}
	return true, t.commit(ctx)
}
