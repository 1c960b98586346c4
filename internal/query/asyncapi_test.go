package query_test

import (
	"os"
	"slices"
	"strconv"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/groupflow/groupflow/internal/query"
)

// TestAsyncAPIDocumentsErrorsAndHeaders keeps the AsyncAPI document's query
// headers in step with the codes and headers the service sends.
func TestAsyncAPIDocumentsErrorsAndHeaders(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../docs/asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Enum []string `yaml:"enum"`
				} `yaml:"properties"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	errHeaders := doc.Components.Schemas["QueryErrorHeaders"].Properties
	var codes []string
	for _, c := range []int{query.CodeBadRequest, query.CodeNotFound, query.CodeThrottled, query.CodeInternal, query.CodeGraphRefused, query.CodeUnavailable} {
		codes = append(codes, strconv.Itoa(c))
	}
	if got := errHeaders["Nats-Service-Error-Code"].Enum; !slices.Equal(got, codes) {
		t.Errorf("documented error codes %v, the service sends %v", got, codes)
	}
	if _, ok := errHeaders[query.RetryAfterHeader]; !ok {
		t.Errorf("QueryErrorHeaders does not document %s", query.RetryAfterHeader)
	}
	if got := doc.Components.Schemas["QueryReplyHeaders"].Properties[query.CacheHeader].Enum; !slices.Equal(got, []string{"hit", "miss"}) {
		t.Errorf("QueryReplyHeaders %s enum %v, want [hit miss]", query.CacheHeader, got)
	}
}
