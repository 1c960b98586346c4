package natsembed

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/nats-io/nats-server/v2/logger"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nuid"
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
	// Port to listen on; 0 lets the kernel pick a free port when the server
	// binds (no window in which another process can take it). Options()
	// reports the port taken. Defaults to 0.
	Port int
	// ServerName names the server (and its node in a cluster). Defaults to
	// a unique name.
	ServerName string
	// MaxStore caps JetStream file storage in bytes. Defaults to 1 GiB.
	MaxStore int64
	// Logging sends the server's own log to stderr. Defaults to off.
	Logging bool
	// MaxPayload is the largest message the server takes, in bytes: a
	// server without a max_payload setting takes 1 MiB. Defaults to 8 MiB,
	// what deploy/nats configures.
	MaxPayload int32

	// cluster is set by StartCluster.
	cluster *clusterOptions
}

type clusterOptions struct {
	name   string
	port   int // 0: the kernel picks one
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
	opts.ServerName = cmp.Or(opts.ServerName, "groupflow-"+nuid.Next())
	opts.MaxStore = cmp.Or(opts.MaxStore, 1<<30)
	opts.MaxPayload = cmp.Or(opts.MaxPayload, 8<<20)

	sopts := &server.Options{
		ServerName:         opts.ServerName,
		Host:               opts.Host,
		Port:               orRandom(opts.Port),
		JetStream:          true,
		StoreDir:           opts.Dir,
		JetStreamMaxStore:  opts.MaxStore,
		JetStreamMaxMemory: 256 << 20,
		NoSigs:             true,
		NoLog:              true, // the server logs through a fatalWatch
		MaxPayload:         opts.MaxPayload,
	}
	if c := opts.cluster; c != nil {
		sopts.Cluster = server.ClusterOpts{Name: c.name, Host: opts.Host, Port: orRandom(c.port)}
		sopts.Routes = c.routes
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: configure server: %w", err)
	}
	log := &fatalWatch{failed: make(chan string, 1)}
	if opts.Logging {
		log.next = logger.NewStdLogger(true, false, false, true, true)
	}
	ns.SetLogger(log, false, false)
	go ns.Start()
	if err := waitReady(ns, log.failed, DefaultReadyTimeout); err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("natsembed: server %s on %s: %w", opts.ServerName, opts.Host, err)
	}
	// Record the ports taken, so a restart on the same options finds the
	// same address (and, in a cluster, its peers find it again).
	if a, ok := ns.Addr().(*net.TCPAddr); ok {
		opts.Port = a.Port
	}
	if c := opts.cluster; c != nil {
		if a := ns.ClusterAddr(); a != nil {
			c.port = a.Port
		}
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

// freePort finds a port free now; another process can take it before the
// server binds it, which Start reports as errStart.
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

// orRandom maps 0 to the server's "kernel picks the port" value.
func orRandom(port int) int {
	if port == 0 {
		return server.RANDOM_PORT
	}
	return port
}

// errStart is a fatal error the server reported while starting, such as a
// port another process took between freePort and the server's listen.
var errStart = errors.New("failed to start")

// waitReady waits until ns accepts clients, the server reports a fatal
// error on failed (an embedded server logs it and carries on, so without
// this a lost port would cost the whole timeout), or timeout passes.
func waitReady(ns *server.Server, failed <-chan string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case msg := <-failed:
			return fmt.Errorf("%w: %s", errStart, msg)
		default:
		}
		if ns.ReadyForConnections(50 * time.Millisecond) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s", timeout)
		}
	}
}

// fatalWatch is the server's logger: it passes every line to next (when
// set) and reports the first fatal one on failed instead of exiting the
// process, as the server's own logger would.
type fatalWatch struct {
	next   server.Logger
	failed chan string
}

func (w *fatalWatch) Fatalf(format string, v ...any) {
	select {
	case w.failed <- fmt.Sprintf(format, v...):
	default:
	}
	w.Errorf(format, v...)
}

func (w *fatalWatch) Noticef(format string, v ...any) { w.log(server.Logger.Noticef, format, v) }
func (w *fatalWatch) Warnf(format string, v ...any)   { w.log(server.Logger.Warnf, format, v) }
func (w *fatalWatch) Errorf(format string, v ...any)  { w.log(server.Logger.Errorf, format, v) }
func (w *fatalWatch) Debugf(format string, v ...any)  { w.log(server.Logger.Debugf, format, v) }
func (w *fatalWatch) Tracef(format string, v ...any)  { w.log(server.Logger.Tracef, format, v) }

func (w *fatalWatch) log(f func(server.Logger, string, ...any), format string, v []any) {
	if w.next != nil {
		f(w.next, format, v...)
	}
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
