package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/groupflow/groupflow/internal/graph"
	"github.com/groupflow/groupflow/internal/jobs/ratelimit"
)

// ErrAccountNotOwned is the error (matched with errors.Is) of a WhatsApp
// Business Account that is not the account of the command's phone number.
var ErrAccountNotOwned = errors.New("account is not the phone number's WhatsApp Business Account")

// AccountNotOwnedError names the account a command named that is not its
// number's. It says nothing of whose it is: the caller may be another
// business.
type AccountNotOwnedError struct {
	Phone string
	WABA  string
}

func (e *AccountNotOwnedError) Error() string {
	return fmt.Sprintf("WhatsApp Business Account %s is not phone number %s's account", e.WABA, e.Phone)
}

// Is makes errors.Is(err, ErrAccountNotOwned) true.
func (e *AccountNotOwnedError) Is(target error) bool { return target == ErrAccountNotOwned }

// checkAccount checks that waba is the WhatsApp Business Account of the
// job's phone number before anything is asked of Graph about the account:
// every number shares the worker's access token, so Graph would read or
// change any account's templates for a caller limited to its own number.
//
// Which account each number is in comes from configuration
// (RATE_LIMIT_ACCOUNTS) and webhooks (ratelimit.Accounts), at no call. A
// number whose account is not known costs one listing of waba's numbers,
// GET /{WABA_ID}/phone_numbers, in the number's reads limit; each number
// listed is learnt. A number known in another account, or not listed, is
// a permanent failure (reason account_not_owned); an account Graph does
// not know (100) is none of the number's either. A listing that fails
// otherwise is retried as any Graph read is.
func (w *Worker) checkAccount(ctx context.Context, job *Job, waba string) error {
	phone := job.Command.PhoneNumberID
	switch known := w.accounts.Of(phone); known {
	case waba:
		return nil
	case "":
	default:
		return Permanent(&AccountNotOwnedError{Phone: phone, WABA: waba})
	}
	var numbers []string
	err := w.call(ctx, job, ratelimit.Reads, Safe, func(ctx context.Context) (err error) {
		numbers, err = w.graph.AccountPhoneNumbers(ctx, waba)
		return err
	})
	if err != nil && codeOf(err) == graph.CodeInvalidParameter && graph.ClassOf(err) == graph.ClassPermanent {
		return Permanent(&AccountNotOwnedError{Phone: phone, WABA: waba})
	}
	if err != nil {
		return fmt.Errorf("list the phone numbers of the account: %w", err)
	}
	for _, n := range numbers {
		w.accounts.Learn(n, waba)
	}
	if !slices.Contains(numbers, phone) {
		return Permanent(&AccountNotOwnedError{Phone: phone, WABA: waba})
	}
	return nil
}
