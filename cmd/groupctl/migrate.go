package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/groupflow/groupflow/internal/events"
)

func (a *app) migrateCommand() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "migrate",
		Short: "Recreate a command stream made before GROUPS_PARKED without roll-ups, keeping every message",
		Long: `A command stream made when parked commands waited in it allows message
schedules and therefore roll-ups, which NATS never turns off: any user that may
publish commands can purge it with a Nats-Rollup header. migrate recreates it as
this version makes it, keeping every queued command in order with its headers
and Nats-Msg-Id, and moves its parked copies to GROUPS_PARKED, due at the same
time. Publishes are refused while it runs (the ingest answers 503).

Run it once every process runs this version, with every worker stopped: it
refuses while workers heartbeat or pull, unless --force (their deliveries
under way then come again; the ledger still executes each command once). An
interrupted run carries on when run again; on a stream without roll-ups it
does nothing.`,
		Args: exactArgs(),
		RunE: func(c *cobra.Command, _ []string) error {
			ctx := c.Context()
			js, err := a.connect(ctx)
			if err != nil {
				return err
			}
			names := a.names()
			cfg := events.TopologyConfig{Names: names, Replicas: a.nats.Replicas, MaxAckPending: a.nats.MaxAckPending}
			res, err := events.MigrateCommandStream(ctx, js, cfg, events.MigrateOptions{
				Force:    force,
				Progress: func(step string) { a.printf("%s\n", step) },
			})
			if errors.Is(err, events.ErrWorkersActive) {
				return failed(err)
			}
			if err != nil {
				return failed(fmt.Errorf("%w; run groupctl migrate again to carry on", err))
			}
			if res.AlreadyDone {
				a.printf("%s allows no roll-ups: nothing to migrate\n", names.CommandStream())
				return nil
			}
			a.printf("migrated: %s allows no roll-ups; %d queued message(s) kept, %d parked copy(ies) moved to %s. Start the workers.\n",
				names.CommandStream(), res.Commands, res.Parked, names.ParkedStream())
			return nil
		},
	}
	c.Flags().BoolVar(&force, "force", false, "migrate even while workers heartbeat or pull")
	return c
}
