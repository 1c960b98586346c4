package events

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/groupflow/groupflow/internal/natsembed"
)

func TestValidCommandID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"order-4711": true, "a:b.c_d-e": true, "": false, "a b": false, "é": false,
		string(make([]byte, 129)): false,
	} {
		if got := ValidCommandID(id); got != want {
			t.Errorf("ValidCommandID(%q) = %v, want %v", id, got, want)
		}
	}
}

// TestKVKeyIsAcceptedByJetStream stores ids that are valid command ids but
// not valid KV keys in a real bucket.
func TestKVKeyIsAcceptedByJetStream(t *testing.T) {
	t.Parallel()
	nc, err := nats.Connect(natsembed.RunTest(t).ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "kvkey_test", Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"order:4711", ".a", "a.", "a..b", ".", ":", "a.b", "A-z_0.9:x"}
	keys := map[string]string{}
	for _, id := range ids {
		if !ValidCommandID(id) {
			t.Fatalf("%q is not a valid command id", id)
		}
		key := KVKey(id)
		if other, dup := keys[key]; dup {
			t.Errorf("ids %q and %q share the key %q", other, id, key)
		}
		keys[key] = id
		if _, err := kv.PutString(ctx, key, id); err != nil {
			t.Errorf("Put(KVKey(%q) = %q): %v", id, key, err)
			continue
		}
		if e, err := kv.Get(ctx, key); err != nil || string(e.Value()) != id {
			t.Errorf("Get(%q) = %v, %v; want %q", key, e, err, id)
		}
	}
}
