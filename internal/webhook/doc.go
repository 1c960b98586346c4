// Package webhook verifies, parses and normalises Meta's WhatsApp webhooks for
// groups and message statuses, splitting each delivery into items that can be
// published and deduplicated one by one.
//
// Handler is the endpoint: GET answers Meta's subscription handshake; POST
// checks X-Hub-Signature-256 on the raw body before anything is parsed, turns
// the delivery into Items with Parse and answers 200 only after its Publisher
// (JetStreamPublisher in production) has stored every one of them. Any other
// answer makes Meta retry, and because each Item's MsgID is derived from its
// content, not from the delivery, a retry is dropped by JetStream's duplicate
// window instead of being processed twice.
//
// Workers read an Item back with encoding/json and call Decode to get the
// typed GroupEvent, Status or InboundMessage. Meta's documented spelling
// drift (old field and type names, participant_recipient_id, numbers sent as
// strings, initiated_by outside the group object) is normalised by Parse, so
// consumers see one spelling. The fixtures in testdata/meta-examples are
// Meta's own documentation examples.
package webhook
