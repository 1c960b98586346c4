// Package webhook verifies, parses and normalises Meta's WhatsApp webhooks for
// groups and message statuses, splitting each delivery into items that can be
// published and deduplicated one by one.
package webhook
