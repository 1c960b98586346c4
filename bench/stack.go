package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
	"github.com/groupflow/groupflow/internal/natsembed"
	"github.com/groupflow/groupflow/internal/webhook"
)

// StackConfig says what a Stack runs.
type StackConfig struct {
	// Cluster is the number of NATS servers; 0 or 1 runs a single server.
	Cluster int
	// Topology sizes the streams and consumers. Replicas defaults to 3 for
	// a cluster. Worker processes ensure the default topology at start, so
	// anything else here is only for in-process workers.
	Topology events.TopologyConfig
	// Sim configures the simulator. Its WebhookURL defaults to the stack's
	// in-process webhook handler.
	Sim sim.Config
	// NoWebhookHandler leaves webhooks to the caller (an ingest process).
	NoWebhookHandler bool
}

// Stack is NATS with the groupflow topology, the Graph simulator over HTTP
// and (unless told otherwise) the webhook handler the ingest serves,
// publishing to JetStream, all in the harness process. Workers run beside it.
type Stack struct {
	Dir     string
	Server  *natsembed.Server  // single-server stacks
	Cluster *natsembed.Cluster // cluster stacks
	URL     string
	NC      *nats.Conn
	JS      jetstream.JetStream
	Names   events.Names
	Sim     *sim.Server
	SimURL  string
	Graph   *graph.Client
	// HooksURL receives the simulator's webhooks (empty without the handler).
	HooksURL string

	simSrv, hooksSrv *httptest.Server
	topology         events.TopologyConfig
}

// NewStack starts a stack with its data under dir.
func NewStack(ctx context.Context, dir string, cfg StackConfig) (_ *Stack, err error) {
	s := &Stack{Dir: dir, Names: cfg.Topology.Names}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if cfg.Cluster > 1 {
		s.Cluster, err = natsembed.StartCluster(filepath.Join(dir, "nats"), cfg.Cluster)
		if err != nil {
			return nil, err
		}
		s.URL = s.Cluster.ClientURL()
		if cfg.Topology.Replicas == 0 {
			cfg.Topology.Replicas = 3
		}
	} else {
		s.Server, err = natsembed.Start(natsembed.Options{Dir: filepath.Join(dir, "nats"), MaxStore: 8 << 30})
		if err != nil {
			return nil, err
		}
		s.URL = s.Server.ClientURL()
	}
	s.NC, err = nats.Connect(s.URL, nats.Name("groupflow-bench"), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	s.JS, err = jetstream.New(s.NC, jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return nil, err
	}
	s.topology = cfg.Topology
	if err := s.ensure(ctx); err != nil {
		return nil, err
	}

	if !cfg.NoWebhookHandler {
		s.hooksSrv = httptest.NewServer(&webhook.Handler{
			AppSecret: []byte(sim.DefaultAppSecret),
			Publisher: webhook.JetStreamPublisher{JS: s.JS, Names: s.Names},
			Logger:    slog.New(slog.DiscardHandler),
		})
		s.HooksURL = s.hooksSrv.URL + "/webhook"
		if cfg.Sim.WebhookURL == "" {
			cfg.Sim.WebhookURL = s.HooksURL
		}
	}
	if err := cfg.Sim.Validate(); err != nil {
		return nil, fmt.Errorf("simulator config: %w", err)
	}
	s.Sim = sim.New(cfg.Sim)
	s.simSrv = httptest.NewServer(s.Sim)
	s.SimURL = s.simSrv.URL
	s.Graph, err = NewGraphClient(s.SimURL, 64)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// ensure creates the topology, retrying while a cluster elects leaders.
func (s *Stack) ensure(ctx context.Context) error {
	cfg := s.topology
	cfg.Names = s.Names
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		err := events.Ensure(ctx, s.JS, cfg)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ensure topology: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// NewGraphClient is a Graph client for the simulator at url, keeping as
// many idle connections as calls run at once (as cmd/worker does).
func NewGraphClient(url string, conns int) (*graph.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = conns
	return graph.New(graph.Config{BaseURL: url, AccessToken: sim.DefaultAccessToken, Timeout: 10 * time.Second,
		HTTPClient: &http.Client{Transport: tr}})
}

// Close stops everything the stack started.
func (s *Stack) Close() {
	if s.simSrv != nil {
		s.simSrv.CloseClientConnections()
		s.simSrv.Close()
	}
	if s.Sim != nil {
		s.Sim.Close()
	}
	if s.hooksSrv != nil {
		s.hooksSrv.CloseClientConnections()
		s.hooksSrv.Close()
	}
	if s.NC != nil {
		s.NC.Close()
	}
	if s.Server != nil {
		s.Server.Shutdown()
	}
	if s.Cluster != nil {
		s.Cluster.Shutdown()
	}
}

// NewGroup creates a group for phone on the simulator and returns its id.
// The simulator knows the group from the create call on.
func (s *Stack) NewGroup(ctx context.Context, phone, subject, approval string) (string, error) {
	if _, err := s.Graph.CreateGroup(ctx, phone, graph.CreateGroupRequest{Subject: subject, JoinApprovalMode: approval}); err != nil {
		return "", fmt.Errorf("create group: %w", err)
	}
	for _, n := range s.Sim.State().Numbers {
		for _, g := range n.Groups {
			if n.PhoneNumberID == phone && g.Subject == subject && !g.Deleted {
				return g.ID, nil
			}
		}
	}
	return "", fmt.Errorf("group %q of %s not in the simulator state", subject, phone)
}

// Command builds a command with JSON params.
func Command(id, typ, phone, group string, params any) events.Command {
	c := events.Command{ID: id, Type: typ, PhoneNumberID: phone, GroupID: group}
	if params != nil {
		c.Params, _ = json.Marshal(params)
	}
	return c
}

// Publish publishes commands as callers do (subject per phone and type,
// Nats-Msg-Id = id), asynchronously, and waits for every ack. A publish
// that fails (a leader election, a reconnect) is repeated with the same id
// until ctx ends: the stream's duplicate window makes that safe.
func (s *Stack) Publish(ctx context.Context, cmds []events.Command) error {
	type pending struct {
		f   jetstream.PubAckFuture
		cmd int
	}
	var inflight []pending
	var failed []int
	wait := func() error {
		for _, p := range inflight {
			select {
			case <-p.f.Ok():
			case <-p.f.Err(): //nolint:errcheck // the failed publish is repeated below with the same id
				failed = append(failed, p.cmd)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		inflight = inflight[:0]
		return nil
	}
	for i, c := range cmds {
		body, err := json.Marshal(c)
		if err != nil {
			return err
		}
		f, err := s.JS.PublishAsync(s.Names.Command(c.PhoneNumberID, c.Type), body, jetstream.WithMsgID(c.ID))
		if err != nil {
			failed = append(failed, i)
			continue
		}
		inflight = append(inflight, pending{f, i})
		if len(inflight) >= 2048 {
			if err := wait(); err != nil {
				return err
			}
		}
	}
	if err := wait(); err != nil {
		return err
	}
	for _, i := range failed {
		if err := s.PublishOne(ctx, cmds[i]); err != nil {
			return err
		}
	}
	return nil
}

// PublishOne publishes one command synchronously, repeating it on failure
// until ctx ends.
func (s *Stack) PublishOne(ctx context.Context, c events.Command) error {
	body, err := json.Marshal(c)
	if err != nil {
		return err
	}
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.JS.Publish(pctx, s.Names.Command(c.PhoneNumberID, c.Type), body, jetstream.WithMsgID(c.ID))
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish %s: %w", c.ID, errors.Join(err, ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TerminalSubject matches every terminal event of every number.
func (s *Stack) TerminalSubject() string { return s.Names.Event("*", "command.*") }

// LiveWorkers counts the workers heartbeating in the workers bucket.
func (s *Stack) LiveWorkers(ctx context.Context) (int, error) {
	kv, err := s.JS.KeyValue(ctx, s.Names.WorkersBucket())
	if err != nil {
		return 0, err
	}
	keys, err := kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return 0, nil
	}
	return len(keys), err
}

// InviteTemplate adds the group invite template from Meta's library to the
// simulator's WABA and returns the reference commands use.
func (s *Stack) InviteTemplate(ctx context.Context) (events.TemplateRef, error) {
	ref := events.TemplateRef{Name: "bench_group_invite", Language: "en"}
	_, err := s.Graph.AddLibraryTemplate(ctx, sim.DefaultWABAID, graph.AddTemplateRequest{
		Name: ref.Name, Category: "UTILITY", Language: ref.Language, LibraryTemplateName: "group_invite_upon_request"})
	if err != nil {
		return ref, fmt.Errorf("add the invite template: %w", err)
	}
	return ref, nil
}
