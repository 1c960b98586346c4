package webhook_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/groupflow/groupflow/internal/webhook"
)

func TestVerify(t *testing.T) {
	t.Parallel()
	secret := []byte("s3cr3t-app-secret")
	body := []byte(`{"object":"whatsapp_business_account","entry":[]}`)
	good := webhook.Sign(secret, body)
	hexPart := strings.TrimPrefix(good, "sha256=")

	tests := []struct {
		name   string
		secret []byte
		body   []byte
		header string
		want   error
	}{
		{"Good signature", secret, body, good, nil},
		{"Upper-case hex and algorithm", secret, body, "SHA256=" + strings.ToUpper(hexPart), nil},
		{"Surrounding whitespace", secret, body, "  " + good + " ", nil},
		{"Missing header", secret, body, "", webhook.ErrSignatureMissing},
		{"Blank header", secret, body, "   ", webhook.ErrSignatureMissing},
		{"Body changed by one byte", secret, append([]byte(nil), append(body, ' ')...), good, webhook.ErrSignatureInvalid},
		{"Other secret", []byte("other"), body, good, webhook.ErrSignatureInvalid},
		{"No algorithm prefix", secret, body, hexPart, webhook.ErrSignatureInvalid},
		{"SHA-1 header value", secret, body, "sha1=" + hexPart[:40], webhook.ErrSignatureInvalid},
		{"Not hex", secret, body, "sha256=" + strings.Repeat("zz", 32), webhook.ErrSignatureInvalid},
		{"Truncated MAC", secret, body, good[:len(good)-2], webhook.ErrSignatureInvalid},
		{"MAC with extra bytes", secret, body, good + "00", webhook.ErrSignatureInvalid},
		{"Prefix only", secret, body, "sha256=", webhook.ErrSignatureInvalid},
		{"Empty secret", nil, body, webhook.Sign(nil, body), webhook.ErrNoAppSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := webhook.Verify(tt.secret, tt.body, tt.header)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify() = %v, want %v", err, tt.want)
			}
			if err != nil {
				// Neither the secret nor the expected MAC may leak.
				for _, secretish := range []string{string(secret), hexPart} {
					if strings.Contains(err.Error(), secretish) {
						t.Fatalf("error %q leaks %q", err, secretish)
					}
				}
			}
		})
	}
}

func TestSignIsMetaFormat(t *testing.T) {
	t.Parallel()
	// Reference value computed independently:
	// printf 'hello' | openssl dgst -sha256 -hmac key
	const want = "sha256=9307b3b915efb5171ff14d8cb55fbcc798c6c0ef1456d66ded1a6aa723a58b7b"
	if got := webhook.Sign([]byte("key"), []byte("hello")); got != want {
		t.Fatalf("Sign() = %s, want %s", got, want)
	}
}
