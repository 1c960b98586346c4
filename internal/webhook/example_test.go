package webhook_test

import (
	"fmt"

	"github.com/groupflow/groupflow/internal/webhook"
)

func ExampleParse() {
	body := []byte(`{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{
	  "field":"group_participant_update",
	  "value":{"messaging_product":"whatsapp",
	    "metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
	    "groups":[{"timestamp":"1750101000","group_id":"G1","type":"group_remove_participants",
	      "removed_participants":[{"wa_id":"16505551234"}]}],
	    "initiated_by":"participant"}}]}]}`)

	items, err := webhook.Parse(body)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, it := range items {
		p, err := webhook.Decode(it)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(it.PhoneNumberID, it.Field, it.Kind, it.Type)
		fmt.Println(p.Group.InitiatedBy, p.Group.RemovedParticipants[0].WAID, p.Group.Time().Format("2006-01-02"))
	}
	// Output:
	// 106540352242922 group_participants_update group group_participants_remove
	// participant 16505551234 2025-06-16
}

func ExampleVerify() {
	secret := []byte("app-secret")
	body := []byte(`{"object":"whatsapp_business_account","entry":[]}`)

	fmt.Println(webhook.Verify(secret, body, webhook.Sign(secret, body)))
	fmt.Println(webhook.Verify(secret, body, "sha256=00"))
	fmt.Println(webhook.Verify(secret, body, ""))
	// Output:
	// <nil>
	// webhook: signature invalid
	// webhook: signature missing
}
