// Package graph is a typed client for the WhatsApp Cloud API's Groups endpoints
// (Graph API), with one Error type whose retry class tells callers whether a
// call may be repeated, must wait, or has failed for good.
package graph
