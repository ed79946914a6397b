// Package hatest runs coordinators as real processes over a real
// three-member etcd cluster and kills them: the high-availability tests.
// It holds tests only.
package hatest
