package deploytest

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// decodeAll decodes every YAML document of file into a new T each.
func decodeAll[T any](t testing.TB, file string) []T {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() //nolint:errcheck // read-only: Close cannot lose data
	var out []T
	dec := yaml.NewDecoder(f)
	for {
		var v T
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, v)
	}
}

func decodeOne[T any](t testing.TB, file string) T {
	t.Helper()
	docs := decodeAll[T](t, file)
	if len(docs) != 1 {
		t.Fatalf("%s holds %d YAML documents, want 1", file, len(docs))
	}
	return docs[0]
}

// runSpec is one container of a manifest running a groupflow binary.
type runSpec struct {
	where   string // for messages: "compose service ingest"
	binary  string
	command []string
	env     map[string]envSpec
	ports   map[string]int // container ports by name ("" when unnamed)
	probes  []probeRef
	k8s     bool

	// Kubernetes only.
	mounts       map[string]string // mount path → volume name
	secretVols   map[string]string // volume name → Secret name
	annotations  map[string]string
	runAsUser    *int64
	podNonRoot   *bool
	container    containerSpec
	podLabels    map[string]string
	deployment   string
	configMapEnv map[string]string // from envFrom configMapRef
}

type envSpec struct {
	value   string // literal value (compose defaults resolved)
	literal bool   // set as a plain value in the manifest
	secret  bool   // from a secretKeyRef
}

type probeRef struct {
	kind string // liveness, readiness, startup
	path string
	port int
}

// binaryOf names the cmd/ binary a command runs.
func binaryOf(command []string) string {
	if len(command) == 0 {
		return ""
	}
	return path.Base(command[0])
}

// composeDefault resolves compose's ${VAR:-default} to its default.
var composeVarRe = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}`)

func composeDefault(s string) string {
	return composeVarRe.ReplaceAllString(s, "$1")
}

// --- compose ---------------------------------------------------------------

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string            `yaml:"image"`
	Build       *composeBuild     `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Expose      []string          `yaml:"expose"`
	Volumes     []string          `yaml:"volumes"`
	ReadOnly    bool              `yaml:"read_only"`
	DependsOn   []string          `yaml:"depends_on"`
	Deploy      struct {
		Replicas int `yaml:"replicas"`
	} `yaml:"deploy"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

func loadCompose(t testing.TB) composeFile {
	t.Helper()
	return decodeOne[composeFile](t, deployPath(t, "compose.yaml"))
}

// composeRuns returns the services that run a groupflow binary from the
// image deploy/Dockerfile builds.
func composeRuns(t testing.TB, c composeFile) []runSpec {
	t.Helper()
	var out []runSpec
	for name, s := range c.Services {
		if s.Build == nil {
			continue
		}
		rs := runSpec{where: "compose service " + name, binary: binaryOf(s.Command), command: s.Command,
			env: map[string]envSpec{}, ports: map[string]int{}}
		for k, v := range s.Environment {
			rs.env[k] = envSpec{value: composeDefault(v), literal: true}
		}
		for _, p := range append(s.Ports, s.Expose...) {
			parts := strings.Split(p, ":")
			n, err := strconv.Atoi(parts[len(parts)-1])
			if err != nil {
				t.Fatalf("compose service %s: port %q", name, p)
			}
			rs.ports[strconv.Itoa(n)] = n
		}
		out = append(out, rs)
	}
	slices.SortFunc(out, func(a, b runSpec) int { return strings.Compare(a.where, b.where) })
	return out
}

// --- Kubernetes ------------------------------------------------------------

type k8sDoc struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec yaml.Node `yaml:"spec"`
	Data any       `yaml:"data"`
}

type kustomization struct {
	Resources          []string `yaml:"resources"`
	Namespace          string   `yaml:"namespace"`
	ConfigMapGenerator []struct {
		Name     string   `yaml:"name"`
		Behavior string   `yaml:"behavior"`
		Literals []string `yaml:"literals"`
	} `yaml:"configMapGenerator"`
	Patches []struct {
		Path string `yaml:"path"`
	} `yaml:"patches"`
	Images []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

type deploymentSpec struct {
	Replicas *int `yaml:"replicas"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"metadata"`
		Spec podSpec `yaml:"spec"`
	} `yaml:"template"`
}

type podSpec struct {
	ServiceAccountName           string `yaml:"serviceAccountName"`
	AutomountServiceAccountToken *bool  `yaml:"automountServiceAccountToken"`
	SecurityContext              struct {
		RunAsNonRoot *bool  `yaml:"runAsNonRoot"`
		RunAsUser    *int64 `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	Containers []containerSpec `yaml:"containers"`
	Volumes    []struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
		} `yaml:"secret"`
	} `yaml:"volumes"`
}

type containerSpec struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef     *struct{ Name, Key string } `yaml:"secretKeyRef"`
			ConfigMapKeyRef  *struct{ Name, Key string } `yaml:"configMapKeyRef"`
			FieldRef         any                         `yaml:"fieldRef"`
			ResourceFieldRef any                         `yaml:"resourceFieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
	LivenessProbe  *probeSpec `yaml:"livenessProbe"`
	ReadinessProbe *probeSpec `yaml:"readinessProbe"`
	StartupProbe   *probeSpec `yaml:"startupProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
}

type probeSpec struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"` // number or port name
	} `yaml:"httpGet"`
}

// kustomized is what a kustomization directory declares, its bases
// included, with configMapGenerator merges applied (patches are kept apart).
type kustomized struct {
	dir        string
	k          kustomization
	files      map[string][]k8sDoc // resource file → its documents
	configMaps map[string]map[string]string
	patches    map[string][]k8sDoc
}

func loadKustomization(t testing.TB, dir string) kustomized {
	t.Helper()
	kz := kustomized{dir: dir, files: map[string][]k8sDoc{}, configMaps: map[string]map[string]string{}, patches: map[string][]k8sDoc{}}
	kz.k = decodeOne[kustomization](t, filepath.Join(dir, "kustomization.yaml"))
	for _, r := range kz.k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: resource %s: %v", dir, r, err)
		}
		if st.IsDir() {
			base := loadKustomization(t, p)
			for f, docs := range base.files {
				kz.files[f] = docs
			}
			for name, lits := range base.configMaps {
				kz.configMaps[name] = lits
			}
			continue
		}
		kz.files[p] = decodeAll[k8sDoc](t, p)
	}
	for _, g := range kz.k.ConfigMapGenerator {
		lits := map[string]string{}
		if g.Behavior == "merge" || g.Behavior == "replace" {
			base, ok := kz.configMaps[g.Name]
			if !ok {
				t.Errorf("%s: configMapGenerator %s has behavior %s but no base generates it", dir, g.Name, g.Behavior)
			}
			if g.Behavior == "merge" {
				for k, v := range base {
					lits[k] = v
				}
			}
		} else if _, dup := kz.configMaps[g.Name]; dup {
			t.Errorf("%s: configMapGenerator %s is generated twice", dir, g.Name)
		}
		for _, l := range g.Literals {
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				t.Errorf("%s: configMapGenerator %s: literal %q is not NAME=value", dir, g.Name, l)
			}
			lits[k] = v
		}
		kz.configMaps[g.Name] = lits
	}
	for _, p := range kz.k.Patches {
		kz.patches[p.Path] = decodeAll[k8sDoc](t, filepath.Join(dir, p.Path))
	}
	return kz
}

// docs returns every object of the kustomization, in a stable order.
func (kz kustomized) docs() []k8sDoc {
	var files []string
	for f := range kz.files {
		files = append(files, f)
	}
	slices.Sort(files)
	var out []k8sDoc
	for _, f := range files {
		out = append(out, kz.files[f]...)
	}
	return out
}

func decodeSpec[T any](t testing.TB, d k8sDoc) T {
	t.Helper()
	var v T
	if err := d.Spec.Decode(&v); err != nil {
		t.Fatalf("%s %s: spec: %v", d.Kind, d.Metadata.Name, err)
	}
	return v
}

// k8sRuns returns the containers of every Deployment of the kustomization.
func k8sRuns(t testing.TB, kz kustomized) []runSpec {
	t.Helper()
	var out []runSpec
	for _, d := range kz.docs() {
		if d.Kind != "Deployment" {
			continue
		}
		spec := decodeSpec[deploymentSpec](t, d)
		pod := spec.Template.Spec
		for _, c := range pod.Containers {
			rs := runSpec{
				where:  fmt.Sprintf("%s: Deployment %s container %s", relDeploy(t, kz.dir), d.Metadata.Name, c.Name),
				binary: binaryOf(c.Command), command: c.Command, k8s: true,
				env: map[string]envSpec{}, ports: map[string]int{}, mounts: map[string]string{}, secretVols: map[string]string{},
				annotations: spec.Template.Metadata.Annotations, runAsUser: pod.SecurityContext.RunAsUser,
				podNonRoot: pod.SecurityContext.RunAsNonRoot, container: c, podLabels: spec.Template.Metadata.Labels,
				deployment: d.Metadata.Name, configMapEnv: map[string]string{},
			}
			for _, ef := range c.EnvFrom {
				switch {
				case ef.ConfigMapRef != nil:
					lits, ok := kz.configMaps[ef.ConfigMapRef.Name]
					if !ok {
						t.Errorf("%s: envFrom ConfigMap %s is not generated by the kustomization", rs.where, ef.ConfigMapRef.Name)
					}
					for k, v := range lits {
						rs.env[k] = envSpec{value: v, literal: true}
						rs.configMapEnv[k] = v
					}
				case ef.SecretRef != nil:
					t.Errorf("%s: envFrom Secret %s puts unknown names into the environment; mount it and use <NAME>_FILE", rs.where, ef.SecretRef.Name)
				}
			}
			for _, e := range c.Env {
				es := envSpec{value: e.Value, literal: e.ValueFrom == nil}
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					es.secret = true
				}
				rs.env[e.Name] = es
			}
			for _, p := range c.Ports {
				rs.ports[p.Name] = p.ContainerPort
			}
			for _, v := range pod.Volumes {
				if v.Secret != nil {
					rs.secretVols[v.Name] = v.Secret.SecretName
				}
			}
			for _, m := range c.VolumeMounts {
				rs.mounts[m.MountPath] = m.Name
			}
			for kind, p := range map[string]*probeSpec{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
				if p == nil {
					continue
				}
				if p.HTTPGet == nil {
					t.Errorf("%s: %s probe is not an HTTP GET", rs.where, kind)
					continue
				}
				rs.probes = append(rs.probes, probeRef{kind: kind, path: p.HTTPGet.Path, port: resolvePort(t, rs, p.HTTPGet.Port)})
			}
			slices.SortFunc(rs.probes, func(a, b probeRef) int { return strings.Compare(a.kind, b.kind) })
			out = append(out, rs)
		}
	}
	return out
}

func resolvePort(t testing.TB, rs runSpec, port any) int {
	t.Helper()
	switch p := port.(type) {
	case int:
		return p
	case string:
		if n, ok := rs.ports[p]; ok {
			return n
		}
		t.Errorf("%s: port %q names no container port", rs.where, p)
	default:
		t.Errorf("%s: port %v is neither a number nor a name", rs.where, port)
	}
	return 0
}

func relDeploy(t testing.TB, p string) string {
	t.Helper()
	r, err := filepath.Rel(repoRoot(t), p)
	if err != nil {
		return p
	}
	return r
}

func kustomizations(t testing.TB) []kustomized {
	t.Helper()
	return []kustomized{
		loadKustomization(t, deployPath(t, "k8s", "base")),
		loadKustomization(t, deployPath(t, "k8s", "overlays", "production")),
	}
}

// --- checks shared by compose and Kubernetes -------------------------------

// checkRun checks one container against the binary it runs: the binary
// exists and is where the image puts it, every variable set is one it reads
// (secrets only from files or Secrets on Kubernetes), and it listens where
// the manifest says.
func checkRun(t *testing.T, rs runSpec) {
	t.Helper()
	if !slices.Contains(commands(t), rs.binary) {
		t.Fatalf("%s runs %q, which is not a binary under cmd/ (%v)", rs.where, rs.command, commands(t))
	}
	if dir := path.Dir(rs.command[0]); dir != imageBinDir(t) {
		t.Errorf("%s runs %s, but deploy/Dockerfile puts the binaries in %s", rs.where, rs.command[0], imageBinDir(t))
	}
	vars, ok := binaryVars(t, rs.binary)
	if !ok {
		t.Skipf("cmd/%s does not support --print-config yet: the variables %s sets are not checked", rs.binary, rs.where)
	}
	for _, name := range sortedKeys(rs.env) {
		e := rs.env[name]
		if !reads(t, rs.binary, vars, name) {
			t.Errorf("%s sets %s, which %s does not read (`%s --print-config` lists what it reads)", rs.where, name, rs.binary, rs.binary)
		}
		if rs.k8s && vars[name].Secret && e.literal {
			t.Errorf("%s sets the secret %s as a literal value; use %s_FILE with a mounted Secret, or a secretKeyRef", rs.where, name, name)
		}
		if base, ok := strings.CutSuffix(name, "_FILE"); ok && vars[base].Secret && rs.k8s {
			if vol := mountedVolume(rs, e.value); rs.secretVols[vol] == "" {
				t.Errorf("%s reads %s from %s, which is not in a mounted Secret", rs.where, base, e.value)
			}
		}
	}
	if _, ok := rs.configMapEnv[""]; ok {
		t.Errorf("%s: a ConfigMap literal has an empty name", rs.where)
	}
	for name := range rs.configMapEnv {
		if vars[name].Secret {
			t.Errorf("%s: the secret %s is in a ConfigMap; put it in a Secret", rs.where, name)
		}
	}

	addrVar, serves := addrVars[rs.binary]
	if !serves {
		return
	}
	addr := rs.env[addrVar].value
	if addr == "" {
		addr = vars[addrVar].Default
	}
	if addr == "" {
		t.Errorf("%s: the listen address (%s) of %s is unknown", rs.where, addrVar, rs.binary)
		return
	}
	port := portOf(t, addr)
	if !slices.Contains(slices.Collect(maps.Values(rs.ports)), port) {
		t.Errorf("%s: %s listens on port %d (%s=%s), but the manifest declares ports %v", rs.where, rs.binary, port, addrVar, addr, rs.ports)
	}
	for _, p := range rs.probes {
		if p.port != port {
			t.Errorf("%s: %s probe on port %d, but %s listens on %d", rs.where, p.kind, p.port, rs.binary, port)
		}
	}
	metrics := port
	if v := metricsAddrVars[rs.binary]; v != "" && cmp.Or(rs.env[v].value, vars[v].Default) != "" {
		metrics = portOf(t, cmp.Or(rs.env[v].value, vars[v].Default))
		if metrics == port {
			t.Errorf("%s: %s serves /metrics on port %d (%s), which is also its public port (%s)", rs.where, rs.binary, metrics, v, addrVar)
		}
		if !slices.Contains(slices.Collect(maps.Values(rs.ports)), metrics) {
			t.Errorf("%s: %s serves /metrics on port %d (%s), but the manifest declares ports %v", rs.where, rs.binary, metrics, v, rs.ports)
		}
	}
	if a := rs.annotations["prometheus.io/port"]; a != "" && a != strconv.Itoa(metrics) {
		t.Errorf("%s: prometheus.io/port is %s, but %s serves /metrics on %d", rs.where, a, rs.binary, metrics)
	}
}

// metricsPort is the port a server binary serves /metrics on as
// configured in rs: its metrics listener's, when a manifest sets one, else
// its listen port.
func metricsPort(t *testing.T, rs runSpec) int {
	t.Helper()
	if v := metricsAddrVars[rs.binary]; rs.env[v].value != "" {
		return portOf(t, rs.env[v].value)
	}
	return listenPort(t, rs)
}

// mountedVolume returns the volume mounted at the longest mount path
// holding file.
func mountedVolume(rs runSpec, file string) string {
	best, vol := "", ""
	for mp, v := range rs.mounts {
		if (file == mp || strings.HasPrefix(file, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best, vol = mp, v
		}
	}
	return vol
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// imageBinDir is where deploy/Dockerfile copies the binaries in the final
// image.
func imageBinDir(t testing.TB) string {
	t.Helper()
	df := dockerfile(t)
	m := regexp.MustCompile(`(?m)^COPY --from=build /out/ (\S+)$`).FindStringSubmatch(df)
	if m == nil {
		t.Fatal("deploy/Dockerfile does not COPY --from=build /out/ into the final image")
	}
	return strings.TrimSuffix(m[1], "/")
}

func dockerfile(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(deployPath(t, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// urlHostPort splits an http URL into host and port.
func urlHostPort(t testing.TB, raw string) (host string, port int, p string) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		t.Fatalf("%q is not a URL", raw)
	}
	n, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("%q names no port", raw)
	}
	return u.Hostname(), n, u.Path
}
