package jobs

import (
	"net/netip"
	"testing"
)

func TestPublicAddr(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"93.184.215.14":        true,
		"2606:4700:4700::1111": true,
		"64:ff9b::808:808":     true, // NAT64 of 8.8.8.8
		"127.0.0.1":            false,
		"10.1.2.3":             false,
		"172.16.5.4":           false,
		"192.168.1.1":          false,
		"169.254.169.254":      false, // cloud metadata services
		"100.100.100.200":      false, // shared address space, a cloud's metadata too
		"0.0.0.0":              false,
		"224.0.0.1":            false,
		"255.255.255.255":      false,
		"240.0.0.1":            false,
		"::":                   false,
		"::1":                  false,
		"fe80::1":              false,
		"fd00:ec2::254":        false, // unique local, IPv6 metadata services
		"::ffff:127.0.0.1":     false,
		"::ffff:10.0.0.1":      false,
		"64:ff9b::a00:1":       false, // NAT64 of 10.0.0.1
		"64:ff9b:1::1":         false,
	} {
		if got := publicAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("publicAddr(%s) = %v, want %v", addr, got, want)
		}
	}
}
