package natsembed

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Cluster is a set of embedded servers routed into one JetStream cluster.
type Cluster struct {
	Servers []*Server
	name    string
}

// StartCluster starts n servers (n ≥ 3 for R3 streams) with their stores under
// dir and waits until the cluster has a meta leader that sees every peer.
func StartCluster(dir string, n int) (*Cluster, error) {
	if n < 1 {
		return nil, errors.New("natsembed: a cluster needs at least one server")
	}
	const host = "127.0.0.1"
	clientPorts := make([]int, n)
	routePorts := make([]int, n)
	routes := make([]*url.URL, n)
	for i := range n {
		var err error
		if clientPorts[i], err = freePort(host); err != nil {
			return nil, err
		}
		if routePorts[i], err = freePort(host); err != nil {
			return nil, err
		}
		routes[i] = &url.URL{Scheme: "nats-route", Host: host + ":" + strconv.Itoa(routePorts[i])}
	}
	c := &Cluster{name: "groupflow-" + strconv.Itoa(clientPorts[0])}
	for i := range n {
		s, err := Start(Options{
			Dir:        filepath.Join(dir, "n"+strconv.Itoa(i)),
			Host:       host,
			Port:       clientPorts[i],
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
