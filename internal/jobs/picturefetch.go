package jobs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// errNotPublic refuses a profile picture URL whose host resolves to an
// address outside the public internet.
var errNotPublic = errors.New("not a public address")

// notPublic are the ranges, besides what netip.Addr's predicates name,
// that no picture is served from: shared address space (carrier NAT, and
// some clouds' metadata services), IETF protocol assignments, benchmarking
// and the reserved class E.
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
}

// nat64 is the well-known NAT64 prefix: its last 32 bits are an IPv4
// address, which must be public too.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// publicAddr reports whether a picture may be fetched from ip.
func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.Is6() && nat64.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte(b[12:]))
	}
	if !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return false // loopback, link-local, multicast, unspecified, private
	}
	for _, p := range notPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// dialPublic is a net.Dialer's Control: it runs on the address being
// connected to, after name resolution, so neither a host name resolving to
// an internal address nor a redirect to one gets a connection.
func dialPublic(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil || !publicAddr(ap.Addr()) {
		return fmt.Errorf("%s is %w", ap.Addr(), errNotPublic)
	}
	return nil
}

// pictureClient fetches the profile pictures commands give by URL. A
// caller names the URL, and the worker runs inside the deployment's
// network: fetched from anywhere, a URL reached its metadata service, NATS
// monitor or admin APIs, made their answer a group's picture, and told
// through the command's event whether a port answered. Only public
// addresses are dialled, directly (a proxy from the environment would be
// an internal address to dial, and would fetch internal ones itself).
func pictureClient() *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: dialPublic}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          16,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
	}
}
