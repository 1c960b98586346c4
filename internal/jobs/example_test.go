package jobs_test

import (
	"fmt"

	"github.com/groupflow/groupflow/internal/jobs"
)

// Command ids may hold characters KV keys may not; LedgerKey escapes them
// so that tools reading the ledger bucket find a command's entry.
func ExampleLedgerKey() {
	fmt.Println(jobs.LedgerKey("order-4711-approve"))
	fmt.Println(jobs.LedgerKey("crm:42.1"))
	// Output:
	// cmd.order-4711-approve
	// cmd.crm=3A42=2E1
}
