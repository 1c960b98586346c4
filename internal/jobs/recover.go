package jobs

import (
	"context"
	"fmt"
	"runtime/debug"
)

// Recover turns a panic in the handler into an error for that command
// alone: the worker keeps running, and the command goes to the
// dead-letter queue (a bug is fixed, then the command replayed).
func Recover() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, job *Job) (res Result, err error) {
			defer func() {
				if v := recover(); v != nil {
					res, err = Result{}, &panicError{value: v, stack: string(debug.Stack())}
				}
			}()
			return next.Handle(ctx, job)
		})
	}
}

type panicError struct {
	value any
	stack string
}

// ErrorType is the error.type of the command's span: a bug, not the
// command or Graph.
func (e *panicError) ErrorType() string { return "panic" }

func (e *panicError) Error() string { return fmt.Sprintf("handler panic: %v", e.value) }
