package nlink

import "github.com/strata-infra/strata/pkg/netnsutil"

// TxChecksumOff turns TX checksum offload off on link name in namespace ns
// ("" is the caller's); see netnsutil.TxChecksumOff.
func TxChecksumOff(ns, name string) error { return netnsutil.TxChecksumOff(ns, name) }
