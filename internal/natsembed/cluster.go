package natsembed

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nuid"
)

// Cluster is a set of embedded servers routed into one JetStream cluster.
type Cluster struct {
	Servers []*Server
	name    string
}

// StartCluster starts n servers (n ≥ 3 for R3 streams) with their stores under
// dir and waits until the cluster has a meta leader that sees every peer.
//
// Client ports are picked by the kernel as each server binds. Route ports
// must be known before any server starts (JetStream wants its peers
// configured), so they are found free first; if another process takes one
// before its server binds it, the cluster starts again on fresh ports,
// after removing what the failed start left in the nodes' stores: dir is
// for a new cluster.
func StartCluster(dir string, n int) (*Cluster, error) {
	if n < 1 {
		return nil, errors.New("natsembed: a cluster needs at least one server")
	}
	const attempts = 5
	for attempt := 1; ; attempt++ {
		c, err := startCluster(dir, n)
		if err == nil || !errors.Is(err, errStart) || attempt == attempts {
			return c, err
		}
		for i := range n {
			if err := os.RemoveAll(nodeDir(dir, i)); err != nil {
				return nil, fmt.Errorf("natsembed: clear the store of a failed start: %w", err)
			}
		}
	}
}

func startCluster(dir string, n int) (*Cluster, error) {
	const host = "127.0.0.1"
	routePorts := make([]int, n)
	routes := make([]*url.URL, n)
	for i := range n {
		var err error
		if routePorts[i], err = pickPort(host); err != nil {
			return nil, err
		}
		routes[i] = &url.URL{Scheme: "nats-route", Host: net.JoinHostPort(host, strconv.Itoa(routePorts[i]))}
	}
	c := &Cluster{name: "groupflow-" + nuid.Next()}
	for i := range n {
		s, err := Start(Options{
			Dir:        nodeDir(dir, i),
			Host:       host,
			ServerName: "n" + strconv.Itoa(i),
			cluster:    &clusterOptions{name: c.name, port: routePorts[i], routes: routes},
		})
		if err != nil {
			c.Shutdown()
			return nil, err
		}
		c.Servers = append(c.Servers, s)
	}
	if err := c.WaitReady(30 * time.Second); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// pickPort finds a route port; tests replace it to lose a port to another
// process.
var pickPort = freePort

func nodeDir(dir string, i int) string { return filepath.Join(dir, "n"+strconv.Itoa(i)) }

// WaitReady waits until one running server is the JetStream meta leader and
// sees every running server as a current peer.
func (c *Cluster) WaitReady(timeout time.Duration) error {
	err := waitFor(timeout, func() bool {
		leader := c.Leader()
		if leader == nil {
			return false
		}
		return len(leader.JetStreamClusterPeers()) == len(c.Running())
	})
	if err != nil {
		return fmt.Errorf("natsembed: cluster %s has no leader with all peers: %w", c.name, err)
	}
	return nil
}

// Leader returns the running server that is the JetStream meta leader, or nil.
func (c *Cluster) Leader() *Server {
	for _, s := range c.Running() {
		if s.JetStreamIsLeader() {
			return s
		}
	}
	return nil
}

// Running returns the servers that have not been shut down.
func (c *Cluster) Running() []*Server {
	var out []*Server
	for _, s := range c.Servers {
		if s.Running() {
			out = append(out, s)
		}
	}
	return out
}

// ClientURL returns the client URLs of every server, comma separated, as
// nats.Connect accepts them.
func (c *Cluster) ClientURL() string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = fmt.Sprintf("nats://%s:%d", s.opts.Host, s.opts.Port)
	}
	return strings.Join(urls, ",")
}

// Restart starts server i again on its store and ports after a shutdown.
func (c *Cluster) Restart(i int) error {
	s, err := Start(c.Servers[i].opts)
	if err != nil {
		return err
	}
	c.Servers[i] = s
	return nil
}

// Shutdown stops every running server.
func (c *Cluster) Shutdown() {
	for _, s := range c.Running() {
		s.Shutdown()
	}
}
