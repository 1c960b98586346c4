package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/jobs"
)

// FloorConfig configures RunFloor.
type FloorConfig struct {
	NATSURL     string
	GraphURL    string
	Concurrency int
}

// RunFloor is the least a worker keeping DESIGN §5's guarantees can do for
// a get_invite_link command, and nothing more: pull it from the shared
// command consumer, decode it, claim its ledger key (create), call Graph,
// store the result (compare-and-set), publish the terminal event with its
// message id, ack. No rate limiter, no tracing, no handler registry, no
// reconciliation, no retries. The worker section runs it as its own process
// (bench/cmd/floorworker) on the stack the worker used, so the worker's
// figure can be read against what the stored writes alone cost on this
// machine. It returns when ctx ends.
func RunFloor(ctx context.Context, cfg FloorConfig) error {
	nc, err := nats.Connect(cfg.NATSURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	names := events.Names{}
	cons, err := js.Consumer(ctx, names.CommandStream(), names.CommandConsumer())
	if err != nil {
		return fmt.Errorf("the command consumer: %w", err)
	}
	kv, err := js.KeyValue(ctx, names.LedgerBucket())
	if err != nil {
		return fmt.Errorf("the ledger bucket: %w", err)
	}
	gc, err := NewGraphClient(cfg.GraphURL, cfg.Concurrency)
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(cfg.Concurrency))
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()

	one := func(msg jetstream.Msg) error {
		cmd, err := events.DecodeCommand(msg.Subject(), msg.Data())
		if err != nil {
			return err
		}
		key := jobs.LedgerKey(cmd.ID)
		claim, _ := json.Marshal(map[string]any{"command_id": cmd.ID, "state": jobs.StateRunning, "command": json.RawMessage(msg.Data())})
		rev, err := kv.Create(ctx, key, claim)
		if err != nil {
			return err
		}
		link, err := gc.InviteLink(ctx, cmd.GroupID)
		if err != nil {
			return err
		}
		data, _ := json.Marshal(events.InviteLinkResult{InviteLink: link})
		r := events.CommandResult{CommandID: cmd.ID, CommandType: cmd.Type, PhoneNumberID: cmd.PhoneNumberID,
			GroupID: cmd.GroupID, Outcome: events.OutcomeSucceeded, Result: data, Attempts: 1}
		ev, err := events.NewTerminalEvent(events.SourceWorker, r)
		if err != nil {
			return err
		}
		b, err := events.Marshal(ev)
		if err != nil {
			return err
		}
		done, _ := json.Marshal(map[string]any{"command_id": cmd.ID, "state": jobs.StateSucceeded,
			"command": json.RawMessage(msg.Data()), "result": json.RawMessage(b)})
		if _, err := kv.Update(ctx, key, done, rev); err != nil {
			return err
		}
		m := &nats.Msg{Subject: names.Event(cmd.PhoneNumberID, r.EventType()), Data: b, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, events.TerminalEventID(cmd.ID, ""))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return err
		}
		return msg.Ack()
	}

	var wg sync.WaitGroup
	errs := make(chan error, cfg.Concurrency)
	for range cfg.Concurrency {
		wg.Go(func() {
			for {
				msg, err := it.Next()
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				if err == nil {
					err = one(msg)
				}
				if err != nil && ctx.Err() == nil {
					errs <- err
					it.Stop()
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}
