// Package docs holds groupflow's documents that code checks: the AsyncAPI
// contract and the README's configuration tables, kept identical to what
// the binaries read by this package's tests.
package docs
