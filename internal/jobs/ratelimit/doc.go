// Package ratelimit keeps the Graph API calls of every running worker, taken
// together, within each business phone number's limits, and shares Meta's
// throttling answers between workers.
//
// Each worker holds a local golang.org/x/time/rate limiter per phone number
// and call class (messages, group-management operations, reads). Its share of
// a number's limit follows the live workers, which heartbeat into a JetStream
// key-value bucket: when one joins or dies, every worker recomputes its share
// and updates its limiters in place. Shares are sized so that the calls of all
// workers together never exceed the limit in any sliding one-second window,
// yet use at least 95% of it when there is backlog; ratelimit.go explains the
// arithmetic and registry.go why a larger share is taken up only after a
// settling delay.
//
// A throttling answer from Meta pauses the number (or, for app- and
// account-level throttles, every number those cover) on every worker through
// a shared "throttled until" entry in a second bucket. Wait blocks for a token
// or the end of a pause only while that takes at most MaxWait; beyond that it
// returns a *ThrottledError so the caller can NakWithDelay instead of holding
// a worker. Admit asks the same without waiting, so that a worker hands a
// command back before it does any work for it.
package ratelimit
