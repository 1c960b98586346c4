package graph_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http/httptest"
	"strings"

	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/graph/sim"
)

// Example creates a group on the simulator, finds it in the list of active
// groups, reads its invite link and shows how a refusal is classified.
func Example() {
	s := sim.New(sim.Config{})
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()

	c, err := graph.New(graph.Config{BaseURL: srv.URL, AccessToken: sim.DefaultAccessToken})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	const phoneID = "106540352242922"

	// Creation is asynchronous: the answer holds a request id, and the
	// group id comes in the group_create webhook with the same request id.
	created, err := c.CreateGroup(ctx, phoneID, graph.CreateGroupRequest{
		Subject:          "Watch Enthusiasts",
		JoinApprovalMode: graph.JoinApprovalRequired,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("request id received:", created.RequestID != "")

	for g, err := range c.Groups(ctx, phoneID, 0) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("group:", g.Subject)

		link, err := c.InviteLink(ctx, g.ID)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("invite link:", strings.HasPrefix(link, "https://chat.whatsapp.com/"))

		// Nobody has joined yet, so Graph refuses a group message.
		_, err = c.SendGroupText(ctx, phoneID, g.ID, "Welcome!")
		var ge *graph.Error
		if errors.As(err, &ge) {
			fmt.Println("send refused:", ge.Code, ge.Class, "ambiguous:", graph.IsAmbiguous(err))
		}
	}
	// Output:
	// request id received: true
	// group: Watch Enthusiasts
	// invite link: true
	// send refused: 131020 permanent ambiguous: false
}
