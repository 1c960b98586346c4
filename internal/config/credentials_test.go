package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/groupflow/groupflow/internal/config"
)

// DESIGN §7: NATS_CREDS, NATS_NKEY and NATS_TLS_* each get a connection
// to a server that requires them, and none without them.
func TestConnectAuthenticatesWithEachCredential(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("an nkey seed file", func(t *testing.T) {
		t.Parallel()
		user, err := nkeys.CreateUser()
		must(t, err)
		pub, err := user.PublicKey()
		must(t, err)
		seed, err := user.Seed()
		must(t, err)
		url := startServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}}, "nats")
		connects(t, config.NATS{URL: url, NKey: write("user.nk", seed)}, config.NATS{URL: url})
	})

	t.Run("a creds file (user JWT and seed)", func(t *testing.T) {
		t.Parallel()
		operator, err := nkeys.CreateOperator()
		must(t, err)
		opub, err := operator.PublicKey()
		must(t, err)
		oc := jwt.NewOperatorClaims(opub)
		account, err := nkeys.CreateAccount()
		must(t, err)
		apub, err := account.PublicKey()
		must(t, err)
		ajwt, err := jwt.NewAccountClaims(apub).Encode(operator)
		must(t, err)
		user, err := nkeys.CreateUser()
		must(t, err)
		upub, err := user.PublicKey()
		must(t, err)
		ujwt, err := jwt.NewUserClaims(upub).Encode(account)
		must(t, err)
		seed, err := user.Seed()
		must(t, err)
		creds, err := jwt.FormatUserConfig(ujwt, seed)
		must(t, err)
		resolver := &server.MemAccResolver{}
		must(t, resolver.Store(apub, ajwt))
		url := startServer(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver}, "nats")
		connects(t, config.NATS{URL: url, Creds: write("user.creds", creds)}, config.NATS{URL: url})
	})

	t.Run("a client certificate and the server's CA", func(t *testing.T) {
		t.Parallel()
		ca := newCA(t)
		serverCert, serverKey := ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
		clientCert, clientKey := ca.issue(t, "groupflow", x509.ExtKeyUsageClientAuth)
		pair, err := tls.X509KeyPair(serverCert, serverKey)
		must(t, err)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca.pem)
		url := startServer(t, &server.Options{TLS: true, TLSVerify: true, TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		}}, "tls")
		caFile := write("ca.pem", ca.pem)
		connects(t, config.NATS{URL: url, TLSCA: caFile, TLSCert: write("client.pem", clientCert), TLSKey: write("client.key", clientKey)},
			config.NATS{URL: url, TLSCA: caFile})
	})
}

// startServer starts a NATS server with opts on a free port and returns
// its URL with scheme.
func startServer(t *testing.T, opts *server.Options, scheme string) string {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", server.RANDOM_PORT, true, true
	s, err := server.NewServer(opts)
	must(t, err)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return fmt.Sprintf("%s://127.0.0.1:%d", scheme, s.Addr().(*net.TCPAddr).Port)
}

// connects checks that good gets a connection that can publish and without
// refuses: Connect keeps trying in the background, so it never connects.
func connects(t *testing.T, good, without config.NATS) {
	t.Helper()
	nc, err := good.Connect("credentials-test")
	must(t, err)
	defer nc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatalf("not connected with the credential after 10 s: %v", nc.LastError())
		}
		time.Sleep(10 * time.Millisecond)
	}
	must(t, nc.Publish("credentials.test", []byte("hi")))
	must(t, nc.Flush())

	other, err := without.Connect("credentials-test")
	must(t, err)
	defer other.Close()
	deadline = time.Now().Add(10 * time.Second)
	for other.LastError() == nil {
		if other.IsConnected() {
			t.Fatal("connected without the credential")
		}
		if time.Now().After(deadline) {
			t.Fatal("no refusal without the credential after 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if other.IsConnected() {
		t.Fatal("connected without the credential")
	}
}

// testCA issues certificates for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "groupflow test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	return testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate for 127.0.0.1 and its key, both PEM.
func (ca testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	must(t, err)
	k, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: k})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
