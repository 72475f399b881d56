// Package charts tests the Helm chart in charts/revoked: helm lint, helm template with
// several value sets, every rendered manifest decoded strictly into k8s.io/api types, and
// the facts a deployment depends on (the sidecar's ports match Envoy's config, probes on
// /readyz, hardened security contexts, the values schema).
package charts

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/revoked-dev/revoked/envoy"
	"github.com/revoked-dev/revoked/internal/ingestd"
	"github.com/revoked-dev/revoked/internal/sidecar"
	revsync "github.com/revoked-dev/revoked/sync"
)

// helmVersion is the Helm the Makefile pins (HELM_VERSION).
const helmVersion = "v3.22.0"

const chartDir = "revoked"

// defaultKubeVersion is the cluster version the chart is rendered for.
const defaultKubeVersion = "1.31.0"

var helmOnce = sync.OnceValues(func() (string, error) {
	if h := os.Getenv("HELM"); h != "" {
		if _, err := os.Stat(h); err != nil {
			return "", fmt.Errorf("$HELM=%s: %w", h, err)
		}
		return h, nil
	}
	root, err := filepath.Abs("..")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin")
	h := filepath.Join(bin, "helm")
	if _, err := os.Stat(h); err == nil {
		return h, nil
	}
	cmd := exec.Command("go", "install", "helm.sh/helm/v3/cmd/helm@"+helmVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("$HELM is unset and `GOBIN=%s go install helm.sh/helm/v3/cmd/helm@%s` failed: %w\n%s", bin, helmVersion, err, out)
	}
	return h, nil
})

// helm runs the helm binary ($HELM, or bin/helm installed on first use) and returns its
// standard output, or its error with standard error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	h, err := helmOnce()
	if err != nil {
		t.Fatalf("no helm: %v", err)
	}
	// Offline, helm assumes Kubernetes 1.20, below the chart's kubeVersion: render for a
	// cluster with native sidecars unless the test names another version.
	if len(args) > 0 && (args[0] == "template" || args[0] == "lint") && !slices.Contains(args, "--kube-version") {
		args = append(args, "--kube-version", defaultKubeVersion)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(h, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// valueSet is a values file of the chart's ci/ directory ("" for the defaults) and what
// it must render.
type valueSet struct {
	file  string
	sets  []string       // --set values after the file
	kinds map[string]int // rendered objects of each kind
	// Only with an example: how Envoy calls revoked.
	example *exampleWant
	// The operator's pack is on: checkMonitoring.
	monitoring bool
}

type exampleWant struct {
	grpc      bool
	unix      bool
	native    bool
	adminPort int
}

var valueSets = map[string]valueSet{
	// The defaults, with the one choice the chart refuses to make for the user.
	"default": {
		sets:  []string{"sidecar.allowAnyAudience=true"},
		kinds: map[string]int{"Job": 1, "Pod": 1, "CronJob": 1, "Secret": 1, "ConfigMap": 1},
	},
	"ingest": {
		file: "ci/ingest-values.yaml",
		kinds: map[string]int{"Job": 1, "Pod": 1, "Deployment": 1, "Service": 2, "PodDisruptionBudget": 1, "ServiceAccount": 1,
			"Ingress": 1, "HorizontalPodAutoscaler": 1, "NetworkPolicy": 3, "ConfigMap": 2, "CronJob": 1, "Secret": 1},
	},
	"example-unix": {
		file:    "ci/example-unix-values.yaml",
		kinds:   map[string]int{"Job": 1, "Pod": 1, "Deployment": 1, "Service": 1, "ConfigMap": 2, "ServiceAccount": 1, "CronJob": 1},
		example: &exampleWant{grpc: true, unix: true, native: true, adminPort: 9193},
	},
	"example-http": {
		file:    "ci/example-http-values.yaml",
		kinds:   map[string]int{"Job": 1, "Pod": 1, "Deployment": 2, "Service": 3, "ConfigMap": 2, "ServiceAccount": 1, "PodDisruptionBudget": 1, "CronJob": 1, "Secret": 1},
		example: &exampleWant{grpc: false, native: true, adminPort: 9293},
	},
	// A region of a two-region fleet (docs/regions.md): the region's NATS holds a mirror
	// made by revokectl stream init --mirror-of, so no stream-init Job.
	"region-a": {
		file:  "ci/region-a-values.yaml",
		kinds: map[string]int{"Pod": 1, "CronJob": 1, "Secret": 1, "ConfigMap": 1},
	},
	// The operator's pack, all of it on; TestTemplate checks it with checkMonitoring.
	"monitoring": {
		file: "ci/monitoring-values.yaml",
		kinds: map[string]int{"Job": 1, "Pod": 1, "Deployment": 2, "Service": 3, "ConfigMap": 3, "ServiceAccount": 1,
			"PodDisruptionBudget": 1, "PrometheusRule": 1, "PodMonitor": 1, "ServiceMonitor": 1, "CronJob": 1, "Secret": 1},
		example:    &exampleWant{grpc: true, native: true, adminPort: 9193},
		monitoring: true,
	},
}

// TestValueSetsCoverCI makes every ci/*-values.yaml part of the tests.
func TestValueSetsCoverCI(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("ci/ has %d value sets, want at least 2", len(files))
	}
	for _, f := range files {
		rel, _ := filepath.Rel(chartDir, f)
		found := false
		for _, vs := range valueSets {
			found = found || vs.file == rel
		}
		if !found {
			t.Errorf("%s is not in valueSets", rel)
		}
	}
}

func valueArgs(vs valueSet) []string {
	var args []string
	if vs.file != "" {
		args = append(args, "-f", filepath.Join(chartDir, vs.file))
	}
	for _, s := range vs.sets {
		args = append(args, "--set", s)
	}
	return args
}

func TestLint(t *testing.T) {
	t.Run("library chart", func(t *testing.T) {
		if out, err := helm(t, "lint", "--strict", "revoked-sidecar"); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	})
	t.Run("every SSF, logout and OAuth value", func(t *testing.T) {
		if out, err := helm(t, "lint", "--strict", chartDir, "-f", filepath.Join("testdata", "ssf-values.yaml")); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	})
	for name, vs := range valueSets {
		t.Run(name, func(t *testing.T) {
			out, err := helm(t, append([]string{"lint", "--strict", chartDir}, valueArgs(vs)...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// manifests holds the objects of one helm template run.
type manifests struct {
	deployments []appsv1.Deployment
	services    []corev1.Service
	configMaps  []corev1.ConfigMap
	secrets     []corev1.Secret
	jobs        []batchv1.Job
	cronJobs    []batchv1.CronJob
	pdbs        []policyv1.PodDisruptionBudget
	sas         []corev1.ServiceAccount
	pods        []corev1.Pod
	netpols     []networkingv1.NetworkPolicy
	ingresses   []networkingv1.Ingress
	hpas        []autoscalingv2.HorizontalPodAutoscaler
	httpRoutes  []httpRoute
	pack        pack // the Prometheus Operator's resources (monitoring_test.go)
	kinds       map[string]int
}

// render runs helm template and decodes every document strictly into its k8s.io/api type:
// an unknown field or a wrong type fails the test.
func render(t *testing.T, args ...string) *manifests {
	t.Helper()
	out, err := helm(t, append([]string{"template", "rel", chartDir, "--namespace", "ns"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return decodeAll(t, out)
}

func decodeAll(t *testing.T, out string) *manifests {
	t.Helper()
	m := &manifests{kinds: map[string]int{}}
	for _, doc := range strings.Split(out, "\n---\n") {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
		if meta.Kind == "" {
			continue // only comments
		}
		m.kinds[meta.Kind]++
		var err error
		switch meta.APIVersion + " " + meta.Kind {
		case "apps/v1 Deployment":
			m.deployments = append(m.deployments, strict[appsv1.Deployment](doc, &err))
		case "v1 Service":
			m.services = append(m.services, strict[corev1.Service](doc, &err))
		case "v1 ConfigMap":
			m.configMaps = append(m.configMaps, strict[corev1.ConfigMap](doc, &err))
		case "v1 Secret":
			m.secrets = append(m.secrets, strict[corev1.Secret](doc, &err))
		case "batch/v1 Job":
			m.jobs = append(m.jobs, strict[batchv1.Job](doc, &err))
		case "batch/v1 CronJob":
			m.cronJobs = append(m.cronJobs, strict[batchv1.CronJob](doc, &err))
		case "policy/v1 PodDisruptionBudget":
			m.pdbs = append(m.pdbs, strict[policyv1.PodDisruptionBudget](doc, &err))
		case "v1 ServiceAccount":
			m.sas = append(m.sas, strict[corev1.ServiceAccount](doc, &err))
		case "v1 Pod":
			m.pods = append(m.pods, strict[corev1.Pod](doc, &err))
		case "networking.k8s.io/v1 NetworkPolicy":
			m.netpols = append(m.netpols, strict[networkingv1.NetworkPolicy](doc, &err))
		case "networking.k8s.io/v1 Ingress":
			m.ingresses = append(m.ingresses, strict[networkingv1.Ingress](doc, &err))
		case "autoscaling/v2 HorizontalPodAutoscaler":
			m.hpas = append(m.hpas, strict[autoscalingv2.HorizontalPodAutoscaler](doc, &err))
		case "gateway.networking.k8s.io/v1 HTTPRoute":
			m.httpRoutes = append(m.httpRoutes, strict[httpRoute](doc, &err))
		case "monitoring.coreos.com/v1 PrometheusRule", "monitoring.coreos.com/v1 PodMonitor", "monitoring.coreos.com/v1 ServiceMonitor":
			err = m.pack.decode(meta.Kind, doc)
		default:
			t.Fatalf("unexpected %s %s", meta.APIVersion, meta.Kind)
		}
		if err != nil {
			t.Fatalf("%s: %v in\n%s", meta.Kind, err, doc)
		}
	}
	return m
}

func strict[T any](doc string, errp *error) T {
	var v T
	*errp = yaml.UnmarshalStrict([]byte(doc), &v)
	return v
}

func TestTemplate(t *testing.T) {
	for name, vs := range valueSets {
		t.Run(name, func(t *testing.T) {
			m := render(t, valueArgs(vs)...)
			for k, n := range vs.kinds {
				if m.kinds[k] != n {
					t.Errorf("%d %s, want %d", m.kinds[k], k, n)
				}
			}
			for k, n := range m.kinds {
				if vs.kinds[k] == 0 {
					t.Errorf("unexpected %d %s", n, k)
				}
			}
			for _, p := range m.podSpecs() {
				checkPod(t, p.name, p.spec)
			}
			if vs.kinds["Job"] > 0 { // a region's value set has no stream-init Job
				checkStreamInit(t, m)
			}
			checkSnapshot(t, m)
			checkTestPod(t, m)
			if m.kinds["PodDisruptionBudget"] > 0 || strings.Contains(vs.file, "ingest") {
				checkIngest(t, m)
			}
			if vs.example != nil {
				checkExample(t, m, *vs.example)
			}
			checkServices(t, m)
			if vs.monitoring {
				checkMonitoring(t, m, &m.pack)
			}
		})
	}
}

type namedPod struct {
	name string
	spec corev1.PodSpec
	meta map[string]string // pod labels
}

func (m *manifests) podSpecs() []namedPod {
	var out []namedPod
	for _, d := range m.deployments {
		out = append(out, namedPod{"Deployment " + d.Name, d.Spec.Template.Spec, d.Spec.Template.Labels})
	}
	for _, j := range m.jobs {
		out = append(out, namedPod{"Job " + j.Name, j.Spec.Template.Spec, j.Spec.Template.Labels})
	}
	for _, j := range m.cronJobs {
		out = append(out, namedPod{"CronJob " + j.Name, j.Spec.JobTemplate.Spec.Template.Spec, j.Spec.JobTemplate.Spec.Template.Labels})
	}
	for _, p := range m.pods {
		out = append(out, namedPod{"Pod " + p.Name, p.Spec, p.Labels})
	}
	return out
}

// checkPod checks what every pod of the chart must have: each container non-root, with a
// read-only root filesystem, no privilege escalation and every capability dropped; and
// every volume mount backed by a volume of the pod.
func checkPod(t *testing.T, name string, spec corev1.PodSpec) {
	t.Helper()
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		if volumes[v.Name] {
			t.Errorf("%s: volume %s twice", name, v.Name)
		}
		volumes[v.Name] = true
	}
	psc := spec.SecurityContext
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: the service account token is mounted", name)
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		where := name + " container " + c.Name
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: no securityContext", where)
			continue
		}
		nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && psc != nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
		if !nonRoot {
			t.Errorf("%s: may run as root", where)
		}
		if uid := runAsUser(spec, c); uid == nil || *uid == 0 {
			t.Errorf("%s: no non-zero runAsUser (an image's named USER cannot be checked by runAsNonRoot)", where)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: root filesystem is writable", where)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: privilege escalation allowed", where)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: privileged", where)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: capabilities %+v, want drop [ALL] and no add", where, sc.Capabilities)
		}
		for _, vm := range c.VolumeMounts {
			if !volumes[vm.Name] {
				t.Errorf("%s: mounts %s, which is not a volume of the pod", where, vm.Name)
			}
		}
	}
}

func runAsUser(spec corev1.PodSpec, c corev1.Container) *int64 {
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return c.SecurityContext.RunAsUser
	}
	if spec.SecurityContext != nil {
		return spec.SecurityContext.RunAsUser
	}
	return nil
}

// flags reads a container's --name=value arguments; repeated flags keep the last value.
func flags(c corev1.Container) map[string]string {
	out := map[string]string{}
	for _, a := range c.Args {
		if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(k, "--") {
			out[strings.TrimPrefix(k, "--")] = v
		}
	}
	return out
}

func splitPort(t *testing.T, addr string) (string, int32) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return h, int32(n)
}

func namedPort(c corev1.Container, name string) (int32, bool) {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

// checkProbe checks that a probe is an HTTP GET of path on the named port, and that the
// port is the one the process listens on at addr (--admin-addr), bound beyond loopback so
// the kubelet reaches it.
func checkProbe(t *testing.T, where string, c corev1.Container, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: probe %+v, want an HTTP GET of %s", where, p, path)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s: probe path %s, want %s", where, p.HTTPGet.Path, path)
	}
	port, ok := namedPort(c, p.HTTPGet.Port.StrVal)
	if !ok {
		t.Errorf("%s: probe port %v is not a named port of the container", where, p.HTTPGet.Port)
		return
	}
	host, lport := splitPort(t, flags(c)["admin-addr"])
	if lport != port {
		t.Errorf("%s: probe port %d, but --admin-addr listens on %d", where, port, lport)
	}
	if host != "0.0.0.0" {
		t.Errorf("%s: --admin-addr on %s: the kubelet cannot reach it", where, host)
	}
}

// revokedContainer finds the revoked sidecar of a pod and says whether it is native.
func revokedContainer(t *testing.T, name string, spec corev1.PodSpec) (corev1.Container, bool) {
	t.Helper()
	for _, c := range spec.InitContainers {
		if c.Name == "revoked" {
			if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Fatalf("%s: revoked is an init container without restartPolicy: Always", name)
			}
			return c, true
		}
	}
	for _, c := range spec.Containers {
		if c.Name == "revoked" {
			return c, false
		}
	}
	t.Fatalf("%s: no revoked container", name)
	return corev1.Container{}, false
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

// checkSidecar checks the revoked container the named template renders for a workload.
func checkSidecar(t *testing.T, where string, c corev1.Container) {
	t.Helper()
	f := flags(c)
	checkProbe(t, where+" readiness", c, c.ReadinessProbe, "/readyz")
	checkProbe(t, where+" startup", c, c.StartupProbe, "/readyz")
	checkProbe(t, where+" liveness", c, c.LivenessProbe, "/healthz")
	grpc := f["grpc-addr"]
	if !strings.HasPrefix(grpc, "unix://") {
		host, port := splitPort(t, grpc)
		if host != "127.0.0.1" {
			t.Errorf("%s: --grpc-addr %s is not on loopback", where, grpc)
		}
		if p, ok := namedPort(c, "revoked-grpc"); !ok || p != port {
			t.Errorf("%s: port revoked-grpc %d, want %d (--grpc-addr)", where, p, port)
		}
	} else if _, ok := namedPort(c, "revoked-grpc"); ok {
		t.Errorf("%s: port revoked-grpc declared for a Unix socket", where)
	}
	if h := f["http-addr"]; h != "" {
		host, port := splitPort(t, h)
		if host != "127.0.0.1" {
			t.Errorf("%s: --http-addr %s is not on loopback", where, h)
		}
		if p, ok := namedPort(c, "revoked-http"); !ok || p != port {
			t.Errorf("%s: port revoked-http %d, want %d (--http-addr)", where, p, port)
		}
	}
	if f["nats-url"] == "" {
		t.Errorf("%s: no --nats-url", where)
	}
	if (f["jwks-url"] == "") == (f["jwks-file"] == "") {
		t.Errorf("%s: want exactly one of --jwks-url and --jwks-file, have %v", where, c.Args)
	}
	// A Go soft memory limit must leave the container room below its hard limit.
	for _, e := range c.Env {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		soft, err := resource.ParseQuantity(strings.TrimSuffix(e.Value, "B"))
		if err != nil {
			t.Errorf("%s: GOMEMLIMIT %q: %v", where, e.Value, err)
			continue
		}
		if hard, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || soft.Cmp(hard) >= 0 {
			t.Errorf("%s: GOMEMLIMIT %s not below the memory limit %v", where, e.Value, c.Resources.Limits.Memory())
		}
	}
	// The rendered arguments are ones the sidecar really accepts.
	if _, err := sidecar.ParseSettings(c.Args); err != nil {
		t.Errorf("%s: revoked refuses the rendered args %v: %v", where, c.Args, err)
	}
}

// checkExample checks the example workload's wiring: Envoy's bootstrap (loaded strictly
// with go-control-plane and validated) calls the address revoked listens on, and the
// Service reaches Envoy's listener.
func checkExample(t *testing.T, m *manifests, want exampleWant) {
	t.Helper()
	var dep *appsv1.Deployment
	for i := range m.deployments {
		if strings.HasSuffix(m.deployments[i].Name, "-example") {
			dep = &m.deployments[i]
		}
	}
	if dep == nil {
		t.Fatal("no example Deployment")
	}
	spec := dep.Spec.Template.Spec
	rc, native := revokedContainer(t, dep.Name, spec)
	if native != want.native {
		t.Errorf("revoked native sidecar = %v, want %v", native, want.native)
	}
	checkSidecar(t, "example revoked", rc)
	if _, p := splitPort(t, flags(rc)["admin-addr"]); int(p) != want.adminPort {
		t.Errorf("--admin-addr port %d, want %d", p, want.adminPort)
	}
	var envoyYAML []string
	for _, cm := range m.configMaps {
		if y, ok := cm.Data["envoy.yaml"]; ok {
			envoyYAML = append(envoyYAML, y)
		}
	}
	if len(envoyYAML) != 1 {
		t.Fatalf("%d ConfigMaps with envoy.yaml, want Envoy's", len(envoyYAML))
	}
	boot, err := envoy.Load([]byte(envoyYAML[0]))
	if err != nil {
		t.Fatalf("Envoy config of the example: %v", err)
	}
	// A client's x-revoked-sub (or x_revoked_sub) never reaches the example's app.
	if err := envoy.CheckSubjectHeader(boot, "x-revoked-sub"); err != nil {
		t.Errorf("Envoy config of the example: %v", err)
	}
	targets, err := envoy.ExtAuthzTargets(boot)
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != 1 {
		t.Fatalf("%d ext_authz filters, want 1", len(targets))
	}
	tg := targets[0]
	if tg.FailureModeAllow {
		t.Error("Envoy fails open")
	}
	if tg.GRPC != want.grpc {
		t.Errorf("Envoy calls revoked over gRPC = %v, want %v", tg.GRPC, want.grpc)
	}
	listen := flags(rc)["http-addr"]
	if want.grpc {
		listen = flags(rc)["grpc-addr"]
	}
	if tg.Address != listen {
		t.Errorf("Envoy's ext_authz cluster calls %s, revoked listens on %s", tg.Address, listen)
	}
	ev := container(t, spec, "envoy")
	if want.unix {
		if tg.Address != "unix://"+envoy.SocketPath {
			t.Errorf("socket %s, want the default %s", tg.Address, envoy.SocketPath)
		}
		dir := filepath.Dir(strings.TrimPrefix(tg.Address, "unix://"))
		mounted := func(c corev1.Container) string {
			for _, vm := range c.VolumeMounts {
				if vm.MountPath == dir {
					return vm.Name
				}
			}
			return ""
		}
		if v := mounted(rc); v == "" || mounted(ev) != v {
			t.Errorf("revoked mounts %q and Envoy %q at %s, want the same volume", mounted(rc), mounted(ev), dir)
		}
		if u, e := runAsUser(spec, rc), runAsUser(spec, ev); u == nil || e == nil || *u != *e {
			t.Error("Envoy and revoked run as different users: Envoy cannot write to the socket")
		}
	}
	// Envoy's listener is the port the Service sends to.
	lport := boot.GetStaticResources().GetListeners()[0].GetAddress().GetSocketAddress().GetPortValue()
	if p, ok := namedPort(ev, "http"); !ok || uint32(p) != lport {
		t.Errorf("Envoy container port http %d, listener on %d", p, lport)
	}
	for _, s := range m.services {
		if strings.HasSuffix(s.Name, "-example") {
			if s.Spec.Ports[0].TargetPort.StrVal != "http" {
				t.Errorf("example Service targets %v, want Envoy's port http", s.Spec.Ports[0].TargetPort)
			}
		}
	}
}

func checkIngest(t *testing.T, m *manifests) {
	t.Helper()
	var dep *appsv1.Deployment
	for i := range m.deployments {
		if strings.HasSuffix(m.deployments[i].Name, "-ingest") {
			dep = &m.deployments[i]
		}
	}
	if dep == nil {
		t.Fatal("no ingest Deployment")
	}
	c := container(t, dep.Spec.Template.Spec, "ingest")
	if len(c.Args) == 0 || c.Args[0] != "ingest" {
		t.Errorf("args %v, want the ingest subcommand first", c.Args)
	} else if _, err := ingestd.ParseSettings(c.Args[1:]); err != nil {
		t.Errorf("revoked ingest refuses the rendered args %v: %v", c.Args, err)
	}
	// The transmitters file, when there is one, is one ingest's ssf loader accepts.
	loadSSF(t, m, dep.Spec.Template.Spec, c)
	checkProbe(t, "ingest readiness", c, c.ReadinessProbe, "/readyz")
	checkProbe(t, "ingest startup", c, c.StartupProbe, "/readyz")
	checkProbe(t, "ingest liveness", c, c.LivenessProbe, "/healthz")
	_, api := splitPort(t, flags(c)["listen"])
	if p, ok := namedPort(c, "api"); !ok || p != api {
		t.Errorf("port api %d, --listen on %d", p, api)
	}
	if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("ingest has no memory request and limit")
	}
	// Replicas: the Deployment's, or the HPA's floor.
	replicas := int32(1)
	if dep.Spec.Replicas != nil {
		replicas = *dep.Spec.Replicas
	}
	for _, h := range m.hpas {
		if h.Spec.ScaleTargetRef.Name != dep.Name {
			t.Errorf("HPA %s scales %s, not the ingest Deployment", h.Name, h.Spec.ScaleTargetRef.Name)
			continue
		}
		if dep.Spec.Replicas != nil {
			t.Error("the Deployment sets replicas while an HPA scales it: every upgrade resets the count")
		}
		replicas = *h.Spec.MinReplicas
	}
	// A PodDisruptionBudget only with more than one replica: with one it blocks every drain.
	if replicas < 2 {
		if len(m.pdbs) != 0 {
			t.Errorf("a PodDisruptionBudget with %d replica", replicas)
		}
	} else {
		if len(m.pdbs) != 1 {
			t.Fatalf("%d PodDisruptionBudgets, want 1", len(m.pdbs))
		}
		sel := labels.SelectorFromSet(m.pdbs[0].Spec.Selector.MatchLabels)
		if !sel.Matches(labels.Set(dep.Spec.Template.Labels)) {
			t.Error("the PodDisruptionBudget does not select the ingest pods")
		}
		if m.pdbs[0].Spec.MinAvailable == nil || m.pdbs[0].Spec.MinAvailable.IntValue() >= int(replicas) {
			t.Errorf("minAvailable %v with %d replicas blocks every eviction", m.pdbs[0].Spec.MinAvailable, replicas)
		}
	}
	checkShutdown(t, "ingest", dep.Spec.Template.Spec, c)
	// The API Service never carries the admin port (/metrics).
	for _, s := range m.services {
		if !strings.HasSuffix(s.Name, "-ingest") {
			continue
		}
		for _, sp := range s.Spec.Ports {
			if sp.TargetPort.StrVal != "api" {
				t.Errorf("the ingest API Service %s exposes port %s", s.Name, sp.TargetPort.StrVal)
			}
		}
	}
}

// checkServices checks that each Service selects a Deployment's pods and targets a named
// port of them.
func checkServices(t *testing.T, m *manifests) {
	t.Helper()
	for _, s := range m.services {
		sel := labels.SelectorFromSet(s.Spec.Selector)
		var match []appsv1.Deployment
		for _, d := range m.deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				match = append(match, d)
			}
		}
		if len(match) != 1 {
			t.Errorf("Service %s selects %d Deployments, want 1", s.Name, len(match))
			continue
		}
		for _, sp := range s.Spec.Ports {
			found := false
			for _, c := range match[0].Spec.Template.Spec.Containers {
				_, ok := namedPort(c, sp.TargetPort.StrVal)
				found = found || ok
			}
			if !found {
				t.Errorf("Service %s port %s targets %v, no such container port", s.Name, sp.Name, sp.TargetPort)
			}
		}
	}
}

func checkStreamInit(t *testing.T, m *manifests) {
	t.Helper()
	if len(m.jobs) != 1 {
		t.Fatalf("%d Jobs, want the stream-init Job", len(m.jobs))
	}
	j := m.jobs[0]
	if hook := j.Annotations["helm.sh/hook"]; hook != "pre-install,pre-upgrade" {
		t.Errorf("stream-init hook %q", hook)
	}
	c := j.Spec.Template.Spec.Containers[0]
	if !slices.Equal(c.Command, []string{"/usr/local/bin/revokectl"}) || len(c.Args) < 2 || c.Args[0] != "stream" || c.Args[1] != "init" {
		t.Errorf("stream-init runs %v %v, want revokectl stream init", c.Command, c.Args)
	}
	f := flags(c)
	for _, k := range []string{"nats-url", "stream", "subject-prefix", "max-token-lifetime", "duplicate-window", "replicas"} {
		if f[k] == "" {
			t.Errorf("stream-init without --%s", k)
		}
	}
	// Helm waits for a hook at most --timeout (5m by default): the Job must give up first,
	// retries included, or helm install fails while the Job still runs.
	if d := j.Spec.ActiveDeadlineSeconds; d == nil || *d >= 300 {
		t.Errorf("stream-init activeDeadlineSeconds %v: not inside Helm's 5m hook timeout", d)
	}
}

// checkSnapshot checks the snapshot CronJob, when there is one: it runs revokectl
// snapshot into the bucket every revoked sidecar of the release starts from, with NATS
// credentials and a signing key of its own; every sidecar gets the public key that
// signing key matches (--snapshot-public-key, mounted from a ConfigMap) and never the
// private key nor the job's credentials (issue 9 row 8: app pods must not be able to
// write a snapshot the sidecars trust).
func checkSnapshot(t *testing.T, m *manifests) {
	t.Helper()
	type sidecar struct {
		where string
		c     corev1.Container
		spec  corev1.PodSpec
	}
	var readers []sidecar
	for _, p := range m.podSpecs() {
		for _, c := range append(slices.Clone(p.spec.InitContainers), p.spec.Containers...) {
			if c.Name == "revoked" && flags(c)["snapshot-bucket"] != "" {
				readers = append(readers, sidecar{p.name, c, p.spec})
			}
		}
	}
	if len(m.cronJobs) == 0 {
		if len(readers) > 0 {
			t.Errorf("sidecars start from a bucket that no CronJob writes")
		}
		return
	}
	if len(m.cronJobs) != 1 {
		t.Fatalf("%d CronJobs, want the snapshot CronJob", len(m.cronJobs))
	}
	cj := m.cronJobs[0]
	if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
		t.Errorf("snapshot concurrency policy %q: two writers would race", cj.Spec.ConcurrencyPolicy)
	}
	job := cj.Spec.JobTemplate.Spec.Template.Spec
	c := job.Containers[0]
	if !slices.Equal(c.Command, []string{"/usr/local/bin/revokectl"}) || len(c.Args) == 0 || c.Args[0] != "snapshot" {
		t.Errorf("snapshot runs %v %v, want revokectl snapshot", c.Command, c.Args)
	}
	jf := flags(c)
	// Flags revokectl snapshot takes (the policy flags it once had are gone: a snapshot
	// holds every event, the sidecars apply their own policy).
	known := map[string]bool{"bucket": true, "signing-key": true, "nats-url": true, "nats-creds": true,
		"nats-tls-ca": true, "nats-tls-cert": true, "nats-tls-key": true, "stream": true, "subject-prefix": true}
	for k := range jf {
		if !known[k] {
			t.Errorf("revokectl snapshot has no flag --%s", k)
		}
	}
	bucket := jf["bucket"]
	if bucket == "" || len(readers) == 0 {
		t.Fatalf("snapshot bucket %q, %d sidecars reading it", bucket, len(readers))
	}

	// The job's secrets: the file each flag names comes from the Secret mounted there.
	secretAt := func(spec corev1.PodSpec, c corev1.Container, file string) (secret, configMap string) {
		for _, vm := range c.VolumeMounts {
			if filepath.Dir(file) != filepath.Clean(vm.MountPath) {
				continue
			}
			for _, v := range spec.Volumes {
				if v.Name != vm.Name {
					continue
				}
				if v.Secret != nil {
					secret = v.Secret.SecretName
				}
				if v.ConfigMap != nil {
					configMap = v.ConfigMap.Name
				}
			}
		}
		return secret, configMap
	}
	jobCreds := natsSecrets(job, c)
	signingKey, _ := secretAt(job, c, jf["signing-key"])
	if signingKey == "" {
		t.Fatalf("snapshot job: --signing-key %q is not mounted from a Secret", jf["signing-key"])
	}
	// Its own NATS identity whenever the sidecars have one (a NATS without users has
	// none for anyone: a forged snapshot still fails the signature).
	for _, r := range readers {
		if len(natsSecrets(r.spec, r.c)) > 0 && len(jobCreds) == 0 {
			t.Fatalf("snapshot job without NATS credentials of its own while %s has some", r.where)
		}
	}
	checkSigningKeyOnlyInJob(t, m, cj.Name, signingKey)
	for _, r := range readers {
		f := flags(r.c)
		if f["snapshot-bucket"] != bucket {
			t.Errorf("%s reads bucket %q, the CronJob writes %q", r.where, f["snapshot-bucket"], bucket)
		}
		for creds := range natsSecrets(r.spec, r.c) {
			if jobCreds[creds] {
				t.Errorf("%s uses the snapshot job's NATS credentials (%s)", r.where, creds)
			}
		}
		for _, v := range r.spec.Volumes {
			if v.Secret != nil && (jobCreds[v.Secret.SecretName] || v.Secret.SecretName == signingKey) {
				t.Errorf("%s: the pod mounts Secret %s of the snapshot job", r.where, v.Secret.SecretName)
			}
		}
		_, cmName := secretAt(r.spec, r.c, f["snapshot-public-key"])
		if cmName == "" {
			t.Errorf("%s: --snapshot-public-key %q is not mounted from a ConfigMap", r.where, f["snapshot-public-key"])
			continue
		}
		for _, cm := range m.configMaps {
			if cm.Name != cmName {
				continue
			}
			pem := cm.Data[filepath.Base(f["snapshot-public-key"])]
			pubs, err := revsync.ParseSnapshotPublicKeys([]byte(pem))
			if err != nil {
				t.Errorf("%s: ConfigMap %s holds no public key the sidecar reads: %v", r.where, cmName, err)
			}
			// The chart's own key pair: the public key the sidecars get is the signing key's.
			if priv := renderedSigningKey(t, m, signingKey, jf["signing-key"]); priv != nil &&
				(len(pubs) != 1 || !pubs[0].Equal(priv.Public())) {
				t.Errorf("%s: ConfigMap %s's public key is not the one of Secret %s's signing key", r.where, cmName, signingKey)
			}
		}
	}
}

// checkTestPod checks the helm test pod: revoked as a native sidecar whose startup probe is
// the kubelet's gRPC health check on the port revoked serves gRPC on.
func checkTestPod(t *testing.T, m *manifests) {
	t.Helper()
	if len(m.pods) != 1 {
		t.Fatalf("%d Pods, want the helm test pod", len(m.pods))
	}
	p := m.pods[0]
	if p.Annotations["helm.sh/hook"] != "test" {
		t.Errorf("test pod hook %q", p.Annotations["helm.sh/hook"])
	}
	if p.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("test pod restartPolicy %s", p.Spec.RestartPolicy)
	}
	rc, native := revokedContainer(t, p.Name, p.Spec)
	if !native {
		t.Fatal("revoked is not a native sidecar in the test pod: the pod would never complete")
	}
	sp := rc.StartupProbe
	if sp == nil || sp.GRPC == nil {
		t.Fatalf("startup probe %+v, want gRPC health", sp)
	}
	host, port := splitPort(t, flags(rc)["grpc-addr"])
	if host != "0.0.0.0" || sp.GRPC.Port != port {
		t.Errorf("gRPC health probe on %d, revoked's gRPC on %s:%d", sp.GRPC.Port, host, port)
	}
	if sp.GRPC.Service == nil || *sp.GRPC.Service != "envoy.service.auth.v3.Authorization" {
		t.Errorf("gRPC health service %v", sp.GRPC.Service)
	}
	checkProbe(t, "test revoked readiness", rc, rc.ReadinessProbe, "/readyz")
	_, httpPort := splitPort(t, flags(rc)["http-addr"])
	script := strings.Join(container(t, p.Spec, "check-http").Args, "\n")
	if !strings.Contains(script, fmt.Sprintf("http://127.0.0.1:%d/", httpPort)) {
		t.Errorf("the checks do not call revoked's HTTP port %d", httpPort)
	}
	if !strings.Contains(script, `Bearer realm="revoked"`) || !strings.Contains(script, `error="invalid_token"`) {
		t.Error("the checks do not expect the contract's 401 challenges")
	}
	for _, c := range p.Spec.Containers {
		if c.Name == "check-grpc" {
			if !slices.Equal(c.Args[:3], []string{"check", "--addr", fmt.Sprintf("127.0.0.1:%d", port)}) {
				t.Errorf("check-grpc args %v", c.Args)
			}
		}
	}
}

// TestDefaultsMatchContract checks that the sidecar rendered with the default values
// listens where the contract (config package) and envoy/sidecar*.yaml say.
func TestDefaultsMatchContract(t *testing.T) {
	out, err := helm(t, "template", "rel", chartDir, "--namespace", "ns", "--set", "example.enabled=true",
		"--set", "sidecar.jwks.url=https://idp.example.com/jwks.json", "--set", "sidecar.audiences={api://shop}")
	if err != nil {
		t.Fatal(err)
	}
	m := decodeAll(t, out)
	for _, p := range m.podSpecs() {
		checkPod(t, p.name, p.spec)
	}
	// The example's Envoy calls the sidecar over gRPC on TCP loopback.
	checkExample(t, m, exampleWant{grpc: true, native: true, adminPort: 9193})
	var dep appsv1.Deployment
	for _, d := range m.deployments {
		if strings.HasSuffix(d.Name, "-example") {
			dep = d
		}
	}
	rc, _ := revokedContainer(t, "example", dep.Spec.Template.Spec)
	f := flags(rc)
	if f["grpc-addr"] != sidecar.DefaultGRPCAddr {
		t.Errorf("--grpc-addr %s, contract default %s", f["grpc-addr"], sidecar.DefaultGRPCAddr)
	}
	if f["http-addr"] != sidecar.DefaultHTTPAddr {
		t.Errorf("--http-addr %s, contract default %s", f["http-addr"], sidecar.DefaultHTTPAddr)
	}
	_, cport := splitPort(t, sidecar.DefaultAdminAddr)
	if _, p := splitPort(t, f["admin-addr"]); p != cport {
		t.Errorf("--admin-addr port %d, contract default %d", p, cport)
	}
	var vals struct {
		Sidecar struct {
			SocketPath string `json:"socketPath"`
		} `json:"sidecar"`
	}
	data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &vals); err != nil {
		t.Fatal(err)
	}
	if vals.Sidecar.SocketPath != envoy.SocketPath {
		t.Errorf("sidecar.socketPath %s, envoy/sidecar-unix.yaml uses %s", vals.Sidecar.SocketPath, envoy.SocketPath)
	}
}

// TestSchemaRejects shows that values.schema.json refuses wrong types, unknown keys and
// values outside their enums, and says where.
func TestSchemaRejects(t *testing.T) {
	cases := map[string]struct {
		set  string
		want string
	}{
		"wrong type":              {"sidecar.ports.grpc=abc", "at '/sidecar/ports/grpc': got string, want integer"},
		"wrong type, bool":        {"ingest.enabled=maybe", "at '/ingest/enabled': got string, want boolean"},
		"unknown key":             {"sidecar.grpcPort=9191", "at '/sidecar': additional properties 'grpcPort' not allowed"},
		"unknown top-level key":   {"replicas=2", "additional properties 'replicas' not allowed"},
		"unknown nested key":      {"nats.tls.cert=x", "at '/nats/tls': additional properties 'cert' not allowed"},
		"enum":                    {"sidecar.transport=udp", "at '/sidecar/transport'"},
		"duration":                {"revocationWindow=1day", "at '/revocationWindow'"},
		"port out of range":       {"sidecar.ports.admin=70000", "at '/sidecar/ports/admin'"},
		"stream replicas":         {"streamInit.replicas=2", "at '/streamInit/replicas'"},
		"NATS URL without scheme": {"nats.url=nats.example.com:4222", "at '/nats/url'"},
		// Issue 13: safe values only.
		"JWKS over plain HTTP":         {"sidecar.jwks.url=http://idp.example.com/jwks", "at '/sidecar/jwks/url'"},
		"ingest JWKS over plain HTTP":  {"ingest.auth.jwksUrl=http://idp.example.com/jwks", "at '/ingest/auth/jwksUrl'"},
		"a second window, sidecar":     {"sidecar.maxTokenLifetime=168h", "additional properties 'maxTokenLifetime' not allowed"},
		"a second window, stream":      {"streamInit.maxTokenLifetime=24h", "additional properties 'maxTokenLifetime' not allowed"},
		"the old shared credentials":   {"nats.credentialsSecret.name=x", "additional properties 'credentialsSecret' not allowed"},
		"unknown NATS auth type":       {"nats.auth.ingest.type=jwt", "at '/nats/auth/ingest/type'"},
		"schedule not cron":            {"snapshot.schedule=every hour", "at '/snapshot/schedule'"},
		"GOMEMLIMIT at the hard limit": {"sidecar.gc.memoryLimitPercent=100", "at '/sidecar/gc/memoryLimitPercent'"},
		"native neither auto nor bool": {"sidecar.native=always", "at '/sidecar/native'"},
		"unknown pod setting":          {"streamInit.pod.hostNetwork=true", "at '/streamInit/pod': additional properties 'hostNetwork' not allowed"},
		// The operator's pack: values Prometheus or the operator would refuse later.
		"for in words":           {"monitoring.prometheusRule.alerts.stale.for=5 minutes", "at '/monitoring/prometheusRule/alerts/stale/for'"},
		"Go duration":            {"monitoring.prometheusRule.alerts.propagationSlow.window=1m30.5s", "at '/monitoring/prometheusRule/alerts/propagationSlow/window'"},
		"empty window":           {"monitoring.prometheusRule.alerts.streamReset.window=", "at '/monitoring/prometheusRule/alerts/streamReset/window'"},
		"ratio above 1":          {"monitoring.prometheusRule.alerts.nearCapacity.ratio=2", "at '/monitoring/prometheusRule/alerts/nearCapacity/ratio'"},
		"unknown alert":          {"monitoring.prometheusRule.alerts.slow.enabled=true", "additional properties 'slow' not allowed"},
		"scrape interval":        {"monitoring.podMonitor.interval=often", "at '/monitoring/podMonitor/interval'"},
		"label value not text":   {"monitoring.prometheusRule.alertLabels.page=true", "at '/monitoring/prometheusRule/alertLabels/page'"},
		"unknown monitoring key": {"monitoring.grafana.enabled=true", "additional properties 'grafana' not allowed"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := helm(t, "template", "rel", chartDir, "--set", tc.set)
			if err == nil {
				t.Fatalf("--set %s was accepted", tc.set)
			}
			if !strings.Contains(err.Error(), "values don't meet the specifications of the schema") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("--set %s: error does not say %q:\n%v", tc.set, tc.want, err)
			}
		})
	}
}

// TestTemplateFailures shows the chart refusing settings that cannot work.
func TestTemplateFailures(t *testing.T) {
	cases := map[string]struct {
		sets []string
		want string
	}{
		"ingest without caller authentication": {[]string{"sidecar.allowAnyAudience=true", "ingest.enabled=true"}, "needs caller authentication"},
		"mutual TLS without TLS":               {[]string{"sidecar.allowAnyAudience=true", "ingest.enabled=true", "ingest.auth.clientCASecret.name=ca"}, "needs ingest.tls.secretName"},
		"two JWKS sources":                     {[]string{"sidecar.allowAnyAudience=true", "sidecar.jwks.url=https://idp/jwks", "sidecar.jwks.configMap.name=jwks"}, "exclude each other"},
		"HTTP example with HTTP off": {[]string{"sidecar.allowAnyAudience=true", "example.enabled=true", "example.authzMode=http", "sidecar.ports.http=0", "sidecar.jwks.url=https://idp/jwks"},
			"needs sidecar.ports.http"},
		"snapshots without the job's credentials": {append(snapshotSets("nats.auth.snapshot.type=none"), "nats.auth.snapshot.secretName=",
			"nats.auth.sidecar.type=creds", "nats.auth.sidecar.secretName=app-nats", "streamInit.enabled=false"), "has no NATS identity of its own while the sidecars have one: set nats.auth.snapshot"},
		"snapshots with the sidecars' credentials": {append(snapshotSets("nats.auth.sidecar.type=creds"), "nats.auth.sidecar.secretName=snap-nats", "streamInit.enabled=false"), "is the sidecars' Secret"},
		"a public key without the signing key":     {snapshotSets("snapshot.signingKeySecret.name="), "go with snapshot.signingKeySecret.name"},
		"a generated key and a public key":         {[]string{"sidecar.allowAnyAudience=true", "snapshot.publicKey.pem=x"}, "go with snapshot.signingKeySecret.name"},
		"snapshots without a public key":           {snapshotSets("snapshot.publicKey.configMap.name="), "needs snapshot.publicKey.pem or snapshot.publicKey.configMap.name"},
		"two public key sources":                   {snapshotSets("snapshot.publicKey.pem=x"), "exclude each other"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			args := []string{"template", "rel", chartDir}
			for _, s := range tc.sets {
				args = append(args, "--set", s)
			}
			_, err := helm(t, args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// snapshotSets are --set values that enable snapshots completely, with override last.
func snapshotSets(override string) []string {
	return []string{"sidecar.jwks.url=https://idp/jwks", "sidecar.allowAnyAudience=true", "snapshot.enabled=true",
		"nats.auth.snapshot.type=creds", "nats.auth.snapshot.secretName=snap-nats", "snapshot.signingKeySecret.name=snap-key",
		"snapshot.publicKey.configMap.name=snap-pub", override}
}

// TestSnapshotPublicKeyConfigMap renders snapshots with an existing ConfigMap for the
// public key: the sidecars mount it, the chart renders none of its own.
func TestSnapshotPublicKeyConfigMap(t *testing.T) {
	var args []string
	for _, s := range snapshotSets("snapshot.publicKey.configMap.key=pub.pem") {
		args = append(args, "--set", s)
	}
	m := render(t, append(args, "--set", "example.enabled=true", "--set", "nats.auth.sidecar.type=creds",
		"--set", "nats.auth.sidecar.secretName=app-nats", "--set", "nats.auth.streamAdmin.type=creds",
		"--set", "nats.auth.streamAdmin.secretName=admin-nats")...)
	checkSnapshot(t, m)
	for _, cm := range m.configMaps {
		if strings.Contains(cm.Name, "snapshot") {
			t.Errorf("ConfigMap %s rendered for an existing one", cm.Name)
		}
	}
	sidecars := 0
	for _, p := range m.podSpecs() {
		if !strings.HasPrefix(p.name, "Deployment ") && !strings.HasPrefix(p.name, "Pod ") {
			continue
		}
		sidecars++
		rc, _ := revokedContainer(t, p.name, p.spec)
		if got := flags(rc)["snapshot-public-key"]; got != "/etc/revoked/snapshot-public-key/pub.pem" {
			t.Errorf("%s: --snapshot-public-key %q", p.name, got)
		}
		found := false
		for _, v := range p.spec.Volumes {
			found = found || v.ConfigMap != nil && v.ConfigMap.Name == "snap-pub"
		}
		if !found {
			t.Errorf("%s does not mount ConfigMap snap-pub", p.name)
		}
	}
	if sidecars != 2 {
		t.Errorf("%d pods with a sidecar, want the example and the test pod", sidecars)
	}
}

// TestDockerfileMatchesChart checks that the image the chart runs is the one the
// Dockerfile builds: static binaries at the paths the chart calls, on distroless static,
// as the non-root uid the chart's security contexts name.
func TestDockerfileMatchesChart(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var froms, copies []string
	var user, entrypoint string
	cgoOff := false
	for _, l := range strings.Split(string(data), "\n") {
		switch f := strings.Fields(l); {
		case len(f) == 0 || strings.HasPrefix(f[0], "#"):
		case f[0] == "FROM":
			froms = append(froms, f[1])
		case f[0] == "COPY" && strings.HasPrefix(f[1], "--from="):
			copies = append(copies, f[len(f)-1])
		case f[0] == "USER":
			user = f[1]
		case f[0] == "ENTRYPOINT":
			entrypoint = strings.Join(f[1:], " ")
		case f[0] == "ENV" && slices.Contains(f[1:], "CGO_ENABLED=0"):
			cgoOff = true
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[len(froms)-1], "gcr.io/distroless/static") {
		t.Errorf("stages %v: want a build stage and distroless/static last", froms)
	}
	if !cgoOff {
		t.Error("CGO_ENABLED=0 is not set: the binaries would not be static")
	}
	// The builder is the exact Go release go.mod names, not a floating tag.
	gomod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var goVersion string
	for _, l := range strings.Split(string(gomod), "\n") {
		if v, ok := strings.CutPrefix(l, "go "); ok {
			goVersion = strings.TrimSpace(v)
		}
	}
	if len(froms) == 0 || !strings.HasPrefix(froms[0], "golang:"+goVersion+"-") && froms[0] != "golang:"+goVersion && !strings.HasPrefix(froms[0], "golang:"+goVersion+"@") {
		t.Errorf("builder %v, want golang:%s (go.mod's go line) exactly", froms, goVersion)
	}
	for _, bin := range []string{"/usr/local/bin/revoked", "/usr/local/bin/revokectl"} {
		if !slices.Contains(copies, bin) {
			t.Errorf("%s is not copied into the image", bin)
		}
	}
	if user != "65532:65532" {
		t.Errorf("USER %s, want 65532:65532 (distroless nonroot, the chart's runAsUser)", user)
	}
	if entrypoint != `["/usr/local/bin/revoked"]` {
		t.Errorf("ENTRYPOINT %s: the chart passes the sidecar's flags as args", entrypoint)
	}
	m := render(t, "-f", filepath.Join(chartDir, "ci", "example-unix-values.yaml"))
	for _, p := range m.podSpecs() {
		for _, c := range append(slices.Clone(p.spec.InitContainers), p.spec.Containers...) {
			if !strings.HasPrefix(c.Image, "ghcr.io/revoked-dev/revoked:") {
				continue
			}
			if len(c.Command) > 0 && !slices.Contains(copies, c.Command[0]) {
				t.Errorf("%s container %s runs %s, not in the image", p.name, c.Name, c.Command[0])
			}
			if u := runAsUser(p.spec, c); u == nil || *u != 65532 {
				t.Errorf("%s container %s does not run as 65532", p.name, c.Name)
			}
		}
	}
}
