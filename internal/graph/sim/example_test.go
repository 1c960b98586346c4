package sim_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/groupflow/groupflow/internal/graph/sim"
)

// A test serves the simulator over real HTTP, calls it like Meta, and drives
// simulated people through Go methods (or the /_sim/ admin API).
func Example() {
	s := sim.New(sim.Config{}) // token "dev-token"; webhooks recorded, sent nowhere
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v23.0/106540352242922/groups",
		strings.NewReader(`{"messaging_product":"whatsapp","subject":"Lucky Shrub VIPs"}`))
	req.Header.Set("Authorization", "Bearer "+sim.DefaultAccessToken)
	resp, err := client.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)

	g := s.State().Numbers[0].Groups[0]
	res, _ := s.Join("+1 650 555 1234", g.InviteLink)
	after, _ := s.Group(g.ID)
	fmt.Println(res.Joined, after.Participants)
	// Output:
	// 200 OK
	// true [16505551234]
}
