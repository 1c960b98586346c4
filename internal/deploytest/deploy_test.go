package deploytest

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/groupflow/groupflow/internal/events"
	"github.com/groupflow/groupflow/internal/natsembed"
)

// accountsConf holds what deploy/nats/accounts.conf declares.
type accountsConf struct {
	users       map[string]string // user → account
	passwordEnv []string          // environment variables the passwords come from
	// subscribe is what each user with permissions may subscribe to (a
	// user without permissions, such as admin, is not in it).
	subscribe map[string][]string
}

// loadAccounts parses deploy/nats/accounts.conf as nats-server does. The
// passwords are read from the environment, so callers cannot be parallel.
func loadAccounts(t *testing.T) accountsConf {
	t.Helper()
	raw, err := os.ReadFile(deployPath(t, "nats", "accounts.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var ac accountsConf
	for _, m := range regexp.MustCompile(`password:\s*\$([A-Z][A-Z0-9_]*)`).FindAllStringSubmatch(string(raw), -1) {
		ac.passwordEnv = append(ac.passwordEnv, m[1])
		t.Setenv(m[1], "x")
	}
	opts, err := server.ProcessConfigFile(deployPath(t, "nats", "accounts.conf"))
	if err != nil {
		t.Fatalf("deploy/nats/accounts.conf: %v", err)
	}
	ac.users = map[string]string{}
	ac.subscribe = map[string][]string{}
	for _, u := range opts.Users {
		if u.Account == nil {
			t.Errorf("deploy/nats/accounts.conf: user %s is in no account", u.Username)
			continue
		}
		ac.users[u.Username] = u.Account.Name
		if u.Permissions != nil && u.Permissions.Subscribe != nil {
			ac.subscribe[u.Username] = u.Permissions.Subscribe.Allow
		}
	}
	return ac
}

// inboxOf is the inbox prefix accounts.conf gives user.
func inboxOf(user string) string { return "_INBOX_" + user }

// checkInboxPrefix fails unless rs, logged in as user, sets the
// NATS_INBOX_PREFIX whose replies that user may subscribe to: with nats.go's
// default _INBOX it could not receive a single reply.
func (ac accountsConf) checkInboxPrefix(t *testing.T, rs runSpec, user string) {
	t.Helper()
	prefix := rs.env["NATS_INBOX_PREFIX"].value
	if prefix == "" {
		t.Errorf("%s sets no NATS_INBOX_PREFIX; the %s user may subscribe to %v, not _INBOX.>", rs.where, user, ac.subscribe[user])
		return
	}
	if want := inboxOf(user); prefix != want {
		t.Errorf("%s sets NATS_INBOX_PREFIX=%s, want %s, the %s user's", rs.where, prefix, want, user)
	}
	if !slices.Contains(ac.subscribe[user], prefix+".>") {
		t.Errorf("%s sets NATS_INBOX_PREFIX=%s, but the %s user may subscribe to %v, not %s.>", rs.where, prefix, user, ac.subscribe[user], prefix)
	}
}

func TestDockerfileBuildsEveryBinaryIntoANonRootStaticImage(t *testing.T) {
	t.Parallel()
	df := dockerfile(t)
	for _, want := range []string{
		"golang:1.26",                           // the toolchain go.mod names
		"--mount=type=cache,target=/go/pkg/mod", // module cache
		"--mount=type=cache,target=/root/.cache/go-build",
		"CGO_ENABLED=0", // static binaries
		"-trimpath",
		`-ldflags "-s -w"`,
		"./cmd/...", // every binary there is
		"USER 65532:65532",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("deploy/Dockerfile does not contain %q", want)
		}
	}
	froms := regexp.MustCompile(`(?m)^FROM\s+(?:--platform=\S+\s+)?(\S+)`).FindAllStringSubmatch(df, -1)
	if len(froms) < 2 {
		t.Fatalf("deploy/Dockerfile has %d stages, want a builder and a final image", len(froms))
	}
	final := froms[len(froms)-1][1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("final image is %s, want distroless/static (CA certificates, no shell) or scratch", final)
	}
	if regexp.MustCompile(`(?m)^ENTRYPOINT`).MatchString(df) {
		t.Error("deploy/Dockerfile sets an ENTRYPOINT; the command must choose the binary")
	}
	gomod, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVersion == nil || !strings.Contains(froms[0][1], "golang:"+string(goVersion[1])) {
		t.Errorf("the builder image %s does not match go.mod's go %s", froms[0][1], goVersion[1])
	}
}

func TestComposeRunsTheBinariesAsTheyAreConfigured(t *testing.T) {
	ac := loadAccounts(t)
	c := loadCompose(t)
	runs := composeRuns(t, c)
	byBinary := map[string]runSpec{}
	for _, rs := range runs {
		byBinary[rs.binary] = rs
		t.Run(rs.where, func(t *testing.T) { checkRun(t, rs) })
	}
	for _, b := range []string{"ingest", "worker", "graphsim"} {
		if _, ok := byBinary[b]; !ok {
			t.Fatalf("compose.yaml runs no %s (it runs %v)", b, slices.Collect(mapKeys(byBinary)))
		}
	}
	service := func(binary string) (string, composeService) {
		for name, s := range c.Services {
			if s.Build != nil && binaryOf(s.Command) == binary {
				return name, s
			}
		}
		return "", composeService{}
	}

	t.Run("the image is built from deploy/Dockerfile at the repository root", func(t *testing.T) {
		for name, s := range c.Services {
			if s.Build == nil {
				continue
			}
			ctx := filepath.Join(deployPath(t), s.Build.Context)
			if _, err := os.Stat(filepath.Join(ctx, s.Build.Dockerfile)); err != nil {
				t.Errorf("service %s builds %s in %s: %v", name, s.Build.Dockerfile, s.Build.Context, err)
			}
			if _, err := os.Stat(filepath.Join(ctx, "go.mod")); err != nil {
				t.Errorf("service %s builds in %s, which is not the module root", name, s.Build.Context)
			}
			if !s.ReadOnly {
				t.Errorf("service %s has a writable root file system", name)
			}
		}
	})

	t.Run("two workers", func(t *testing.T) {
		if _, s := service("worker"); s.Deploy.Replicas != 2 {
			t.Errorf("compose.yaml runs %d workers, want 2", s.Deploy.Replicas)
		}
	})

	t.Run("every file mounted exists", func(t *testing.T) {
		for name, s := range c.Services {
			for _, v := range s.Volumes {
				src, _, _ := strings.Cut(v, ":")
				if strings.HasPrefix(src, ".") {
					if _, err := os.Stat(filepath.Join(deployPath(t), src)); err != nil {
						t.Errorf("service %s mounts %s: %v", name, src, err)
					}
				} else if _, ok := c.Volumes[src]; !ok {
					t.Errorf("service %s mounts the undeclared volume %s", name, src)
				}
			}
		}
	})

	natsServices := map[string]composeService{}
	for name, s := range c.Services {
		if strings.HasPrefix(s.Image, "nats:") {
			natsServices[name] = s
		}
	}
	t.Run("a 3-node NATS 2.15 cluster running deploy/nats/nats-server.conf", func(t *testing.T) {
		if len(natsServices) != 3 {
			t.Fatalf("compose.yaml runs %d NATS servers, want 3", len(natsServices))
		}
		for name, s := range natsServices {
			if s.Image != "nats:2.15" {
				t.Errorf("service %s runs %s, want nats:2.15 (parking needs 2.14+)", name, s.Image)
			}
			if !slices.Contains(s.Volumes, "./nats/nats-server.conf:/etc/nats/nats-server.conf:ro") ||
				!slices.Contains(s.Volumes, "./nats/accounts.conf:/etc/nats/accounts.conf:ro") {
				t.Errorf("service %s does not mount nats-server.conf and accounts.conf side by side: %v", name, s.Volumes)
			}
			if !slices.Contains(s.Command, "/etc/nats/nats-server.conf") {
				t.Errorf("service %s does not run /etc/nats/nats-server.conf: %v", name, s.Command)
			}
			for _, env := range ac.passwordEnv {
				if _, ok := s.Environment[env]; !ok {
					t.Errorf("service %s lacks %s, which accounts.conf reads", name, env)
				}
			}
			if s.Environment["NATS_SERVER_NAME"] != name {
				t.Errorf("service %s names its server %q, want %q (routes use service names)", name, s.Environment["NATS_SERVER_NAME"], name)
			}
		}
	})

	t.Run("the ingest and workers log in to NATS as their own users", func(t *testing.T) {
		for _, b := range []string{"ingest", "worker"} {
			rs := byBinary[b]
			user := rs.env["NATS_USER"].value
			if ac.users[user] == "" {
				t.Errorf("%s logs in as %q, not a user of accounts.conf", rs.where, user)
				continue
			}
			if user != b {
				t.Errorf("%s logs in as %q, want the %s user", rs.where, user, b)
			}
			ac.checkInboxPrefix(t, rs, user)
			for name, s := range natsServices {
				env := "GROUPFLOW_NATS_" + strings.ToUpper(user) + "_PASSWORD"
				if got, want := rs.env["NATS_PASSWORD"].value, composeDefault(s.Environment[env]); got != want {
					t.Errorf("%s's default NATS password %q differs from %q that %s gives %s", rs.where, got, want, name, env)
				}
			}
			for _, u := range strings.Split(rs.env["NATS_URL"].value, ",") {
				host, port, _ := urlHostPort(t, strings.Replace(u, "nats://", "http://", 1))
				if _, ok := natsServices[host]; !ok || port != 4222 {
					t.Errorf("%s connects to %s, not a NATS service's client port", rs.where, u)
				}
			}
		}
	})

	t.Run("the simulator and the components point at each other", func(t *testing.T) {
		ingestName, _ := service("ingest")
		simName, _ := service("graphsim")
		host, port, p := urlHostPort(t, byBinary["graphsim"].env["GRAPHSIM_WEBHOOK_URL"].value)
		if host != ingestName || port != listenPort(t, byBinary["ingest"]) || p != "/webhook" {
			t.Errorf("the simulator posts webhooks to %s:%d%s, want %s:%d/webhook", host, port, p, ingestName, listenPort(t, byBinary["ingest"]))
		}
		host, port, _ = urlHostPort(t, byBinary["worker"].env["GRAPH_API_BASE_URL"].value)
		if host != simName || port != listenPort(t, byBinary["graphsim"]) {
			t.Errorf("the worker calls the Graph API at %s:%d, want the simulator %s:%d", host, port, simName, listenPort(t, byBinary["graphsim"]))
		}
		if got, want := byBinary["graphsim"].env["GRAPHSIM_ACCESS_TOKEN"].value, byBinary["worker"].env["WHATSAPP_ACCESS_TOKEN"].value; got != want {
			t.Errorf("the simulator accepts token %q but the worker sends %q", got, want)
		}
		if got, want := byBinary["graphsim"].env["GRAPHSIM_APP_SECRET"].value, byBinary["ingest"].env["WHATSAPP_APP_SECRET"].value; got != want {
			t.Errorf("the simulator signs with %q but the ingest verifies with %q", got, want)
		}
	})

	t.Run("traces go to the collector and on to Jaeger", func(t *testing.T) {
		col := decodeOne[map[string]any](t, deployPath(t, "compose", "otel-collector.yaml"))
		grpc := dig(col, "receivers", "otlp", "protocols", "grpc", "endpoint")
		exp := dig(col, "exporters", "otlp/jaeger", "endpoint")
		if exp == nil || !strings.HasPrefix(fmt.Sprint(exp), "jaeger:") {
			t.Errorf("the collector exports traces to %v, want the jaeger service", exp)
		}
		if _, ok := c.Services["jaeger"]; !ok {
			t.Error("compose.yaml runs no jaeger")
		}
		pipeline := fmt.Sprint(dig(col, "service", "pipelines", "traces", "exporters"))
		if !strings.Contains(pipeline, "otlp/jaeger") {
			t.Errorf("the traces pipeline exports to %s, want otlp/jaeger", pipeline)
		}
		for _, b := range []string{"ingest", "worker"} {
			rs := byBinary[b]
			host, port, _ := urlHostPort(t, rs.env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].value)
			if _, ok := c.Services[host]; !ok || !strings.Contains(c.Services[host].Image, "opentelemetry-collector") {
				t.Errorf("%s sends traces to %s, not the collector", rs.where, host)
			}
			if want := "0.0.0.0:" + strconv.Itoa(port); fmt.Sprint(grpc) != want || rs.env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"].value != "grpc" {
				t.Errorf("%s sends OTLP/%s to port %d, but the collector's gRPC receiver is on %v",
					rs.where, rs.env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"].value, port, grpc)
			}
		}
	})

	t.Run("Prometheus scrapes the ingest and every worker with the alerts loaded", func(t *testing.T) {
		prom := c.Services["prometheus"]
		var alertsAt string
		for _, v := range prom.Volumes {
			parts := strings.Split(v, ":")
			if parts[0] == "./prometheus/alerts.yaml" {
				alertsAt = parts[1]
			}
		}
		cfg := loadPrometheus(t)
		if alertsAt == "" || !slices.Contains(cfg.RuleFiles, alertsAt) {
			t.Errorf("Prometheus loads rules %v, want deploy/prometheus/alerts.yaml (mounted at %q)", cfg.RuleFiles, alertsAt)
		}
		scraped := map[string]int{}
		for _, sc := range cfg.ScrapeConfigs {
			for _, st := range sc.StaticConfigs {
				for _, target := range st.Targets {
					host, port, _ := strings.Cut(target, ":")
					scraped[host], _ = strconv.Atoi(port)
				}
			}
			for _, d := range sc.DNSSDConfigs {
				for _, n := range d.Names {
					scraped[n] = d.Port
				}
			}
		}
		for _, b := range []string{"ingest", "worker"} {
			name, _ := service(b)
			if got, want := scraped[name], metricsPort(t, byBinary[b]); got != want {
				t.Errorf("Prometheus scrapes %s on port %d, want %d", name, got, want)
			}
		}
	})
}

// listenPort is the port a server binary listens on as configured in rs.
func listenPort(t *testing.T, rs runSpec) int {
	t.Helper()
	addr := rs.env[addrVars[rs.binary]].value
	if addr == "" {
		vars, ok := binaryVars(t, rs.binary)
		if !ok {
			t.Skipf("%s sets no %s and cmd/%s does not support --print-config yet", rs.where, addrVars[rs.binary], rs.binary)
		}
		addr = vars[addrVars[rs.binary]].Default
	}
	return portOf(t, addr)
}

type prometheusConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
		DNSSDConfigs []struct {
			Names []string `yaml:"names"`
			Port  int      `yaml:"port"`
		} `yaml:"dns_sd_configs"`
	} `yaml:"scrape_configs"`
}

func loadPrometheus(t testing.TB) prometheusConfig {
	t.Helper()
	return decodeOne[prometheusConfig](t, deployPath(t, "compose", "prometheus.yml"))
}

func dig(m any, keys ...string) any {
	for _, k := range keys {
		mm, ok := m.(map[string]any)
		if !ok {
			return nil
		}
		m = mm[k]
	}
	return m
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestKubernetesManifestsRunTheBinariesAsTheyAreConfigured(t *testing.T) {
	ac := loadAccounts(t)
	userRe := regexp.MustCompile(`(?m)^USER (\d+)`).FindStringSubmatch(dockerfile(t))
	imageUser, _ := strconv.ParseInt(userRe[1], 10, 64)
	for _, kz := range kustomizations(t) {
		where := relDeploy(t, kz.dir)
		runs := k8sRuns(t, kz)
		binaries := map[string]runSpec{}
		for _, rs := range runs {
			binaries[rs.binary] = rs
			t.Run(rs.where, func(t *testing.T) {
				checkRun(t, rs)
			})
			t.Run(rs.where+" is locked down", func(t *testing.T) {
				c := rs.container
				switch {
				case rs.podNonRoot == nil || !*rs.podNonRoot:
					t.Error("pod does not set runAsNonRoot: true")
				case rs.runAsUser == nil || *rs.runAsUser != imageUser:
					t.Errorf("pod runs as %v, want the image's user %d", rs.runAsUser, imageUser)
				}
				if p := c.SecurityContext.ReadOnlyRootFilesystem; p == nil || !*p {
					t.Error("container does not set readOnlyRootFilesystem: true")
				}
				if p := c.SecurityContext.AllowPrivilegeEscalation; p == nil || *p {
					t.Error("container does not set allowPrivilegeEscalation: false")
				}
				if !slices.Contains(c.SecurityContext.Capabilities.Drop, "ALL") {
					t.Error("container does not drop ALL capabilities")
				}
				for _, r := range []string{"cpu", "memory"} {
					if c.Resources.Requests[r] == "" {
						t.Errorf("container requests no %s", r)
					}
				}
				if c.Resources.Limits["memory"] == "" {
					t.Error("container has no memory limit")
				}
				if !strings.HasPrefix(path0(c.Image), "groupflow") {
					t.Errorf("container runs image %s, want the groupflow image (renamed by the overlay's images:)", c.Image)
				}
			})
			t.Run(rs.where+" has probes and its own NATS user", func(t *testing.T) {
				kinds := map[string]string{}
				for _, p := range rs.probes {
					kinds[p.kind] = p.path
				}
				if kinds["liveness"] != "/healthz" {
					t.Errorf("liveness probe path %q, want /healthz", kinds["liveness"])
				}
				if kinds["readiness"] == "" {
					t.Error("no readiness probe")
				}
				user := rs.env["NATS_USER"].value
				if user != rs.binary || ac.users[user] == "" {
					t.Errorf("logs in to NATS as %q, want its own user %q of accounts.conf", user, rs.binary)
				}
				ac.checkInboxPrefix(t, rs, user)
				if e, ok := rs.env["NATS_PASSWORD_FILE"]; !ok || rs.secretVols[mountedVolume(rs, e.value)] == "" {
					t.Error("the NATS password does not come from a mounted Secret (NATS_PASSWORD_FILE)")
				}
			})
		}
		for _, b := range []string{"ingest", "worker"} {
			if _, ok := binaries[b]; !ok {
				t.Errorf("%s runs no %s", where, b)
			}
		}

		t.Run(where+" services and disruption budgets select the pods", func(t *testing.T) {
			for _, d := range kz.docs() {
				switch d.Kind {
				case "Secret":
					t.Errorf("%s declares Secret %s: secrets are created out of band, never committed", where, d.Metadata.Name)
				case "Service":
					spec := decodeSpec[struct {
						Selector map[string]string `yaml:"selector"`
						Ports    []struct {
							TargetPort any `yaml:"targetPort"`
						} `yaml:"ports"`
					}](t, d)
					rs, ok := selects(runs, spec.Selector)
					if !ok {
						t.Errorf("Service %s selects no pods (%v)", d.Metadata.Name, spec.Selector)
						continue
					}
					for _, p := range spec.Ports {
						if n := resolvePort(t, rs, p.TargetPort); n != listenPort(t, rs) {
							t.Errorf("Service %s sends traffic to port %d, but %s listens on %d", d.Metadata.Name, n, rs.binary, listenPort(t, rs))
						}
					}
				case "PodDisruptionBudget":
					spec := decodeSpec[struct {
						Selector struct {
							MatchLabels map[string]string `yaml:"matchLabels"`
						} `yaml:"selector"`
					}](t, d)
					if _, ok := selects(runs, spec.Selector.MatchLabels); !ok {
						t.Errorf("PodDisruptionBudget %s selects no pods (%v)", d.Metadata.Name, spec.Selector.MatchLabels)
					}
				}
			}
			for _, b := range []string{"ingest", "worker"} {
				found := false
				for _, d := range kz.docs() {
					if d.Kind == "PodDisruptionBudget" {
						spec := decodeSpec[struct {
							Selector struct {
								MatchLabels map[string]string `yaml:"matchLabels"`
							} `yaml:"selector"`
						}](t, d)
						if rs, ok := selects(runs, spec.Selector.MatchLabels); ok && rs.binary == b {
							found = true
						}
					}
				}
				if !found {
					t.Errorf("no PodDisruptionBudget covers the %s", b)
				}
			}
		})

		t.Run(where+" patches change what exists", func(t *testing.T) {
			for file, docs := range kz.patches {
				for _, d := range docs {
					if !hasObject(kz, d.Kind, d.Metadata.Name) {
						t.Errorf("%s patches %s %s, which the base does not declare", file, d.Kind, d.Metadata.Name)
					}
					if d.Kind != "Deployment" {
						continue
					}
					spec := decodeSpec[deploymentSpec](t, d)
					for _, c := range spec.Template.Spec.Containers {
						if !hasContainer(t, kz, d.Metadata.Name, c.Name) {
							t.Errorf("%s patches container %s of %s, which does not exist", file, c.Name, d.Metadata.Name)
						}
					}
				}
			}
		})
	}

	t.Run("production runs R3 streams", func(t *testing.T) {
		prod := kustomizations(t)[1]
		for name, lits := range prod.configMaps {
			if lits["NATS_REPLICAS"] != "3" {
				t.Errorf("production ConfigMap %s sets NATS_REPLICAS=%q, want 3", name, lits["NATS_REPLICAS"])
			}
		}
	})
}

// selects returns the container whose pod carries every label of sel.
func selects(runs []runSpec, sel map[string]string) (runSpec, bool) {
	if len(sel) == 0 {
		return runSpec{}, false
	}
	for _, rs := range runs {
		ok := true
		for k, v := range sel {
			if rs.podLabels[k] != v {
				ok = false
			}
		}
		if ok {
			return rs, true
		}
	}
	return runSpec{}, false
}

func hasObject(kz kustomized, kind, name string) bool {
	for _, d := range kz.docs() {
		if d.Kind == kind && d.Metadata.Name == name {
			return true
		}
	}
	return false
}

func hasContainer(t testing.TB, kz kustomized, deployment, container string) bool {
	for _, d := range kz.docs() {
		if d.Kind == "Deployment" && d.Metadata.Name == deployment {
			for _, c := range decodeSpec[deploymentSpec](t, d).Template.Spec.Containers {
				if c.Name == container {
					return true
				}
			}
		}
	}
	return false
}

// path0 is an image reference without its tag or digest.
func path0(image string) string {
	image, _, _ = strings.Cut(image, "@")
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image
}

// TestProbeAndScrapePathsAreServed starts the real ingest and worker
// binaries and asks them for every path the manifests probe or scrape, on
// the port the manifests probe or scrape it: a binary whose manifests move
// /metrics to a port of its own (metricsAddrVars) is run so, scraped there,
// and its public port must then answer 404 for /metrics.
func TestProbeAndScrapePathsAreServed(t *testing.T) {
	t.Parallel()
	probes, scrapes := map[string][]string{}, map[string][]string{} // binary → paths
	add := func(m map[string][]string, binary, p string) {
		if !slices.Contains(m[binary], p) {
			m[binary] = append(m[binary], p)
		}
	}
	moved := map[string]bool{} // binary → a manifest sets its metricsAddrVars
	note := func(rs runSpec) {
		if v := metricsAddrVars[rs.binary]; v != "" && rs.env[v].value != "" {
			moved[rs.binary] = true
		}
	}
	for _, kz := range kustomizations(t) {
		for _, rs := range k8sRuns(t, kz) {
			note(rs)
			for _, p := range rs.probes {
				add(probes, rs.binary, p.path)
			}
			if p := rs.annotations["prometheus.io/path"]; p != "" {
				add(scrapes, rs.binary, p)
			}
		}
	}
	c := loadCompose(t)
	prom := loadPrometheus(t)
	for _, sc := range prom.ScrapeConfigs {
		for name, s := range c.Services {
			targets := fmt.Sprint(sc.StaticConfigs, sc.DNSSDConfigs)
			if s.Build != nil && strings.Contains(targets, name) {
				add(scrapes, binaryOf(s.Command), sc.MetricsPath)
			}
		}
	}
	for _, rs := range composeRuns(t, c) {
		note(rs)
		if u := rs.env["GRAPHSIM_WEBHOOK_URL"].value; u != "" {
			_, _, p := urlHostPort(t, u)
			add(probes, "ingest", p+"?hub.mode=subscribe&hub.verify_token=deploytest&hub.challenge=42")
		}
	}

	srv := natsembed.RunTest(t)
	env := map[string]map[string]string{
		"ingest": {"NATS_URL": srv.ClientURL(), "WHATSAPP_APP_SECRET": "deploytest", "WHATSAPP_VERIFY_TOKEN": "deploytest"},
		"worker": {"NATS_URL": srv.ClientURL(), "WHATSAPP_ACCESS_TOKEN": "deploytest", "GRAPH_API_BASE_URL": "http://127.0.0.1:9"},
	}
	binaries := slices.Sorted(maps.Keys(probes))
	for _, b := range sortedKeys(scrapes) {
		if !slices.Contains(binaries, b) {
			binaries = append(binaries, b)
		}
	}
	for _, binary := range binaries {
		t.Run(binary, func(t *testing.T) {
			e, ok := env[binary]
			if !ok {
				t.Fatalf("manifests probe %s at %v and scrape it at %v; this test does not know how to start it", binary, probes[binary], scrapes[binary])
			}
			metricsBase := ""
			if moved[binary] {
				addr := freeAddr(t)
				e[metricsAddrVars[binary]] = addr
				metricsBase = "http://" + addr
			}
			base := serve(t, binary, e)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			check := func(base, p string) {
				u, err := url.JoinPath(base, strings.SplitN(p, "?", 2)[0])
				if err != nil {
					t.Fatal(err)
				}
				if q := strings.SplitN(p, "?", 2); len(q) == 2 {
					u += "?" + q[1]
				}
				// Readiness may take a moment after the first answer.
				var status int
				var body string
				for range 100 {
					if status, body = get(ctx, t, u); status == 200 {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				if status != 200 {
					t.Errorf("GET %s on %s = %d %q, want 200", u, binary, status, body)
				}
			}
			for _, p := range probes[binary] {
				check(base, p)
			}
			for _, p := range scrapes[binary] {
				check(cmp.Or(metricsBase, base), p)
				if metricsBase == "" {
					continue
				}
				if status, _ := get(ctx, t, base+p); status != http.StatusNotFound {
					t.Errorf("GET %s on %s's public port = %d, want 404: the manifests scrape it on %s", p, binary, status, metricsAddrVars[binary])
				}
			}
		})
	}
}

func TestKEDAScalesWorkersOnTheCommandConsumer(t *testing.T) {
	ac := loadAccounts(t)
	prod := kustomizations(t)[1]
	file := filepath.Join(prod.dir, "scaledobject.yaml")
	if !slices.Contains(prod.k.Resources, "scaledobject.yaml") {
		t.Error("the production overlay does not list scaledobject.yaml")
	}
	so := decodeOne[k8sDoc](t, file)
	if so.APIVersion != "keda.sh/v1alpha1" || so.Kind != "ScaledObject" {
		t.Fatalf("%s is %s %s, want keda.sh/v1alpha1 ScaledObject", file, so.APIVersion, so.Kind)
	}
	spec := decodeSpec[struct {
		ScaleTargetRef struct {
			Name string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicaCount int `yaml:"minReplicaCount"`
		MaxReplicaCount int `yaml:"maxReplicaCount"`
		Triggers        []struct {
			Type     string            `yaml:"type"`
			Metadata map[string]string `yaml:"metadata"`
		} `yaml:"triggers"`
	}](t, so)

	var worker runSpec
	for _, rs := range k8sRuns(t, prod) {
		if rs.binary == "worker" {
			worker = rs
		}
	}
	if spec.ScaleTargetRef.Name != worker.deployment {
		t.Errorf("the ScaledObject scales %q, want the worker Deployment %q", spec.ScaleTargetRef.Name, worker.deployment)
	}
	if spec.MinReplicaCount < 1 || spec.MaxReplicaCount < spec.MinReplicaCount {
		t.Errorf("replicas between %d and %d, want 1 ≤ min ≤ max", spec.MinReplicaCount, spec.MaxReplicaCount)
	}
	if len(spec.Triggers) == 0 {
		t.Fatal("the ScaledObject has no trigger")
	}
	names := events.Names{}
	tr := spec.Triggers[0]
	helm := loadHelmValues(t)
	for key, want := range map[string]string{
		"stream":   names.CommandStream(),
		"consumer": names.CommandConsumer(),
		"account":  ac.users["worker"], // the account the streams live in
	} {
		if got := tr.Metadata[key]; got != want {
			t.Errorf("trigger %s = %q, want %q", key, got, want)
		}
	}
	if tr.Type != "nats-jetstream" {
		t.Errorf("trigger type %q, want nats-jetstream", tr.Type)
	}
	if n, err := strconv.Atoi(tr.Metadata["lagThreshold"]); err != nil || n < 1 {
		t.Errorf("lagThreshold %q, want a positive integer", tr.Metadata["lagThreshold"])
	}
	_, port, _ := urlHostPort(t, "http://"+tr.Metadata["natsServerMonitoringEndpoint"])
	if want := dig(helm, "config", "monitor", "port"); fmt.Sprint(want) != strconv.Itoa(port) {
		t.Errorf("KEDA reads NATS monitoring on port %d, but the Helm values serve it on %v", port, want)
	}

	for file, docs := range prod.patches {
		for _, d := range docs {
			if d.Kind == "Deployment" && d.Metadata.Name == worker.deployment {
				if r := decodeSpec[deploymentSpec](t, d).Replicas; r != nil {
					t.Errorf("%s sets the worker replicas to %d; KEDA owns them", file, *r)
				}
			}
		}
	}
}

func loadHelmValues(t testing.TB) map[string]any {
	t.Helper()
	return decodeOne[map[string]any](t, deployPath(t, "nats", "helm-values.yaml"))
}

func TestNATSConfigsShareTheAccounts(t *testing.T) {
	ac := loadAccounts(t)

	t.Run("accounts.conf gives every component its user, in one account", func(t *testing.T) {
		for _, u := range []string{"ingest", "worker", "caller", "admin"} {
			if ac.users[u] != "GROUPFLOW" {
				t.Errorf("user %s is in account %q, want GROUPFLOW", u, ac.users[u])
			}
		}
	})

	t.Run("each restricted user may subscribe to replies under its own inbox prefix only", func(t *testing.T) {
		for _, u := range []string{"ingest", "worker", "caller"} {
			allow := ac.subscribe[u]
			if !slices.Contains(allow, inboxOf(u)+".>") {
				t.Errorf("user %s may subscribe to %v, want %s.> among them", u, allow, inboxOf(u))
			}
			for _, s := range allow {
				if s == ">" || (strings.HasPrefix(s, "_INBOX") && s != inboxOf(u)+".>") {
					t.Errorf("user %s may subscribe to %s: replies meant for others", u, s)
				}
			}
		}
	})

	t.Run("the compose server config loads, with JetStream, the cluster and the accounts", func(t *testing.T) {
		t.Setenv("NATS_SERVER_NAME", "nats-1")
		opts, err := server.ProcessConfigFile(deployPath(t, "nats", "nats-server.conf"))
		if err != nil {
			t.Fatalf("deploy/nats/nats-server.conf: %v", err)
		}
		if !opts.JetStream || opts.StoreDir == "" {
			t.Error("JetStream with a file store is not enabled")
		}
		if opts.Port != 4222 || opts.HTTPPort != 8222 {
			t.Errorf("listens on %d (monitoring %d), want 4222 and 8222", opts.Port, opts.HTTPPort)
		}
		if opts.MaxPayload != 8<<20 {
			t.Errorf("max_payload %d, want 8 MiB like the embedded server", opts.MaxPayload)
		}
		c := loadCompose(t)
		var routes []string
		for _, r := range opts.Routes {
			routes = append(routes, r.Hostname())
			if r.Port() != strconv.Itoa(opts.Cluster.Port) {
				t.Errorf("route %s does not use the cluster port %d", r, opts.Cluster.Port)
			}
			if s, ok := c.Services[r.Hostname()]; !ok || !strings.HasPrefix(s.Image, "nats:") {
				t.Errorf("route %s names no NATS service of compose.yaml", r)
			}
		}
		if len(routes) != 3 {
			t.Errorf("routes %v, want the 3 nodes", routes)
		}
		if len(opts.Users) != len(ac.users) {
			t.Errorf("the server has %d users, accounts.conf %d", len(opts.Users), len(ac.users))
		}
	})

	t.Run("the Helm values run a 3-node JetStream cluster on files with accounts.conf", func(t *testing.T) {
		v := loadHelmValues(t)
		for _, c := range []struct {
			keys []string
			want string
		}{
			{[]string{"config", "cluster", "enabled"}, "true"},
			{[]string{"config", "cluster", "replicas"}, "3"},
			{[]string{"config", "jetstream", "enabled"}, "true"},
			{[]string{"config", "jetstream", "fileStore", "enabled"}, "true"},
			{[]string{"config", "jetstream", "fileStore", "pvc", "enabled"}, "true"},
			{[]string{"config", "monitor", "enabled"}, "true"},
			{[]string{"config", "merge", "max_payload"}, "<< 8MB >>"},
		} {
			if got := fmt.Sprint(dig(v, c.keys...)); got != c.want {
				t.Errorf("%s = %s, want %s", strings.Join(c.keys, "."), got, c.want)
			}
		}
		merge, _ := dig(v, "config", "merge").(map[string]any)
		var includes []string
		for k, inc := range merge {
			if strings.HasSuffix(k, "$include") {
				includes = append(includes, fmt.Sprint(inc))
			}
		}
		if !slices.Contains(includes, "accounts.conf") {
			t.Errorf("config.merge includes %v, want accounts.conf", includes)
		}
		env, _ := dig(v, "container", "env").(map[string]any)
		for name, e := range env {
			if _, ok := e.(map[string]any); !ok {
				t.Errorf("container.env.%s is %T; the chart's schema wants a map (value: or valueFrom:)", name, e)
			}
		}
		for _, name := range ac.passwordEnv {
			if dig(env, name, "valueFrom", "secretKeyRef", "name") == nil {
				t.Errorf("container.env lacks %s from a Secret; accounts.conf reads it", name)
			}
		}
	})
}
