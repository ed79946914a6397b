package compute

import (
	"context"
	"errors"

	"github.com/strata-infra/strata/pkg/computespec"
)

// Hypervisor is the part of libvirt the driver uses; Libvirt is the real
// one, a fake in the tests covers the reconcile logic.
type Hypervisor interface {
	// Domains lists every domain on the host with its state and its Strata
	// metadata ("" when it has none).
	Domains(ctx context.Context) ([]Domain, error)
	// Define defines (or redefines) a persistent domain from XML.
	Define(ctx context.Context, xml string) error
	// Do performs an action on the named domain. Destroy and Undefine of a
	// domain that is already gone succeed.
	Do(ctx context.Context, name string, a Action) error
	// Events returns a channel that receives the name of every domain with a
	// lifecycle event, and "" after each (re)connection, until ctx ends. The
	// real hypervisor keeps its connection alive for as long as ctx lasts.
	Events(ctx context.Context) <-chan string
	// Close closes the connection.
	Close() error
}

// Domain is one libvirt domain as listed.
type Domain struct {
	Name     string
	State    computespec.PowerState
	Metadata string // inner XML of the Strata metadata element, "" if none
}

// Action is something done to a domain.
type Action int

// Actions on a domain.
const (
	ActStart    Action = iota // virDomainCreate
	ActShutdown               // ACPI power button
	ActDestroy                // hard power off
	ActReset                  // hard reset
	ActUndefine               // remove the persistent definition
)

func (a Action) String() string {
	return [...]string{"start", "shutdown", "destroy", "reset", "undefine"}[a]
}

// ErrDisconnected is returned while libvirtd cannot be reached.
var ErrDisconnected = errors.New("libvirtd not connected")
