// Package guestfeatures holds tests that run only inside the kernel-test
// guest (see package kerneltest): they load the kernel modules the agent
// needs on production hosts and prove each one works. On any other host
// every test skips.
//
// The host side, kerneltest.TestKernelFeaturesInGuest, runs them through
// the harness.
package guestfeatures
