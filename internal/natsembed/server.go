package natsembed

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultReadyTimeout bounds how long Start waits for the server to accept
// clients and for JetStream to be usable.
const DefaultReadyTimeout = 15 * time.Second

// Options configures an embedded server.
type Options struct {
	// Dir is the JetStream store directory. Required: data survives a restart
	// of a server started on the same Dir.
	Dir string
	// Host to listen on. Defaults to 127.0.0.1.
	Host string
	// Port to listen on; 0 picks a free port. Defaults to 0.
	Port int
	// ServerName names the server (and its node in a cluster). Defaults to
	// a name derived from the port.
	ServerName string
	// MaxStore caps JetStream file storage in bytes. Defaults to 1 GiB.
	MaxStore int64
	// Logging sends the server's own log to stderr. Defaults to off.
	Logging bool

	// cluster is set by StartCluster.
	cluster *clusterOptions
}

type clusterOptions struct {
	name   string
	port   int
	routes []*url.URL
}

// Server is a running embedded NATS server with JetStream.
type Server struct {
	*server.Server
	opts Options
}

// Start starts a NATS server with JetStream and waits until it accepts
// clients and JetStream is ready (for a cluster member: until it is
// running; use Cluster.WaitReady for the cluster as a whole).
func Start(opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("natsembed: Options.Dir is required")
	}
	opts.Host = cmp.Or(opts.Host, "127.0.0.1")
	if opts.Port == 0 {
		port, err := freePort(opts.Host)
		if err != nil {
			return nil, err
		}
		opts.Port = port
	}
	opts.ServerName = cmp.Or(opts.ServerName, "groupflow-"+strconv.Itoa(opts.Port))
	opts.MaxStore = cmp.Or(opts.MaxStore, 1<<30)

	sopts := &server.Options{
		ServerName:         opts.ServerName,
		Host:               opts.Host,
		Port:               opts.Port,
		JetStream:          true,
		StoreDir:           opts.Dir,
		JetStreamMaxStore:  opts.MaxStore,
		JetStreamMaxMemory: 256 << 20,
		NoSigs:             true,
		NoLog:              !opts.Logging,
		MaxPayload:         8 << 20,
	}
	if c := opts.cluster; c != nil {
		sopts.Cluster = server.ClusterOpts{Name: c.name, Host: opts.Host, Port: c.port}
		sopts.Routes = c.routes
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: configure server: %w", err)
	}
	if opts.Logging {
		ns.ConfigureLogger()
	}
	go ns.Start()
	if !ns.ReadyForConnections(DefaultReadyTimeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("natsembed: server on %s:%d not ready within %s", opts.Host, opts.Port, DefaultReadyTimeout)
	}
	s := &Server{Server: ns, opts: opts}
	if opts.cluster == nil {
		if err := waitFor(DefaultReadyTimeout, ns.JetStreamEnabled); err != nil {
			ns.Shutdown()
			return nil, fmt.Errorf("natsembed: JetStream not enabled: %w", err)
		}
	}
	return s, nil
}

// Options returns the options the server was started with, with defaults
// filled in (so a restart on the same Dir and Port finds the same data).
func (s *Server) Options() Options { return s.opts }

// Shutdown stops the server and waits until it has stopped.
func (s *Server) Shutdown() {
	s.Server.Shutdown()
	s.WaitForShutdown()
}

func freePort(host string) (int, error) {
	// Start takes no context, and binding a local port does not block.
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0")) //nolint:noctx // see above
	if err != nil {
		return 0, fmt.Errorf("natsembed: find a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	// The port must be free again for the server to take it.
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("natsembed: release port %d: %w", port, err)
	}
	return port, nil
}

func waitFor(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met within %s", timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
