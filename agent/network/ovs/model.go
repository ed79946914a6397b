package ovs

import (
	"github.com/ovn-kubernetes/libovsdb/model"
)

// Hand-written models for the four Open_vSwitch tables the driver uses, with
// only the columns it reads or writes (libovsdb maps a subset of columns).

// OpenvSwitch is the root row of the Open_vSwitch database.
type OpenvSwitch struct {
	UUID        string            `ovsdb:"_uuid"`
	Bridges     []string          `ovsdb:"bridges"`
	OtherConfig map[string]string `ovsdb:"other_config"`
	ExternalIDs map[string]string `ovsdb:"external_ids"`
}

// Bridge is a row of table Bridge.
type Bridge struct {
	UUID         string            `ovsdb:"_uuid"`
	Name         string            `ovsdb:"name"`
	Ports        []string          `ovsdb:"ports"`
	FailMode     *string           `ovsdb:"fail_mode"`
	DatapathType string            `ovsdb:"datapath_type"`
	Protocols    []string          `ovsdb:"protocols"`
	OtherConfig  map[string]string `ovsdb:"other_config"`
	ExternalIDs  map[string]string `ovsdb:"external_ids"`
}

// Port is a row of table Port.
type Port struct {
	UUID        string            `ovsdb:"_uuid"`
	Name        string            `ovsdb:"name"`
	Interfaces  []string          `ovsdb:"interfaces"`
	Tag         *int              `ovsdb:"tag"`
	ExternalIDs map[string]string `ovsdb:"external_ids"`
}

// Interface is a row of table Interface.
type Interface struct {
	UUID        string            `ovsdb:"_uuid"`
	Name        string            `ovsdb:"name"`
	Type        string            `ovsdb:"type"`
	Options     map[string]string `ovsdb:"options"`
	Ofport      *int              `ovsdb:"ofport"`
	Error       *string           `ovsdb:"error"`
	ExternalIDs map[string]string `ovsdb:"external_ids"`
}

// Table names in the Open_vSwitch schema.
const (
	tableOpenvSwitch = "Open_vSwitch"
	tableBridge      = "Bridge"
	tablePort        = "Port"
	tableInterface   = "Interface"
)

// DatabaseModel is the client model of the Open_vSwitch database.
func DatabaseModel() (model.ClientDBModel, error) {
	return model.NewClientDBModel("Open_vSwitch", map[string]model.Model{
		tableOpenvSwitch: &OpenvSwitch{},
		tableBridge:      &Bridge{},
		tablePort:        &Port{},
		tableInterface:   &Interface{},
	})
}
