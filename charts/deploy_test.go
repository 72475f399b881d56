package charts

// Issue 13: deploying the way platform teams run it. Separate NATS identities per role, one
// revocation window, the sidecar-only library chart, clean rollouts, pod settings on every
// workload, NetworkPolicies, safe defaults.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/revoked-dev/revoked/internal/flagenv"
	revflags "github.com/revoked-dev/revoked/internal/flags"
	"github.com/revoked-dev/revoked/natsconn"
	"github.com/revoked-dev/revoked/stream"
)

// httpRoute is the part of a Gateway API HTTPRoute the chart renders (decoded strictly:
// a field the chart writes that is not here fails the test).
type httpRoute struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   map[string]any `json:"metadata"`
	Spec       struct {
		ParentRefs []map[string]any `json:"parentRefs"`
		Hostnames  []string         `json:"hostnames"`
		Rules      []struct {
			BackendRefs []struct {
				Name string `json:"name"`
				Port int32  `json:"port"`
			} `json:"backendRefs"`
		} `json:"rules"`
	} `json:"spec"`
}

func sets(kv ...string) []string {
	var args []string
	for _, s := range kv {
		args = append(args, "--set", s)
	}
	return args
}

// natsSecrets lists the Secrets a container's NATS identity comes from: the files behind
// --nats-creds, --nats-nkey and --nats-tls-cert, and the *_NATS_* variables' secretKeyRefs.
func natsSecrets(spec corev1.PodSpec, c corev1.Container) map[string]bool {
	out := map[string]bool{}
	f := flags(c)
	for _, flag := range []string{"nats-creds", "nats-nkey", "nats-tls-cert"} {
		file := f[flag]
		if file == "" {
			continue
		}
		for _, vm := range c.VolumeMounts {
			if filepath.Dir(file) != filepath.Clean(vm.MountPath) {
				continue
			}
			for _, v := range spec.Volumes {
				if v.Name == vm.Name && v.Secret != nil {
					out[v.Secret.SecretName] = true
				}
			}
		}
	}
	for _, e := range c.Env {
		if strings.Contains(e.Name, "_NATS_") && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			out[e.ValueFrom.SecretKeyRef.Name] = true
		}
	}
	return out
}

// natsOptions reads a container's NATS settings the way the binary does: its --nats-*
// arguments, then its environment (every variable from a Secret set to "secret") under
// the binary's prefix, and validates them.
func natsOptions(t *testing.T, c corev1.Container, prefix string) natsconn.Options {
	t.Helper()
	var o natsconn.Options
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	o.RegisterFlags(fs)
	var args []string
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--nats-") {
			args = append(args, a)
		}
	}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("%s: %v", c.Name, err)
	}
	// As flagenv.Apply does, from the container's environment instead of this process's.
	env := map[string]bool{}
	for _, e := range c.Env {
		env[e.Name] = true
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if env[flagenv.Name(prefix, f.Name)] && err == nil {
			err = fs.Set(f.Name, "secret")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("%s: %v", c.Name, err)
	}
	return o
}

// roleContainers finds the container of each NATS role in a render.
func roleContainers(t *testing.T, m *manifests) map[string]struct {
	c    corev1.Container
	spec corev1.PodSpec
} {
	t.Helper()
	out := map[string]struct {
		c    corev1.Container
		spec corev1.PodSpec
	}{}
	for _, p := range m.podSpecs() {
		for _, c := range append(slices.Clone(p.spec.InitContainers), p.spec.Containers...) {
			role := map[string]string{"revoked": "sidecar", "ingest": "ingest", "stream-init": "streamAdmin", "snapshot": "snapshot"}[c.Name]
			if role != "" {
				out[role] = struct {
					c    corev1.Container
					spec corev1.PodSpec
				}{c, p.spec}
			}
		}
	}
	return out
}

// TestNATSAuthModesEveryRole renders each NATS auth mode for each role (four renders, the
// modes rotated over the roles, mutual TLS on one) and checks that the process would
// authenticate that way, from that role's own Secret, with flags and variables the
// binaries really read.
func TestNATSAuthModesEveryRole(t *testing.T) {
	roles := []string{"sidecar", "ingest", "streamAdmin", "snapshot"}
	modes := []string{"creds", "nkey", "userPassword", "token"}
	prefix := map[string]string{"sidecar": "REVOKED", "ingest": "REVOKED", "streamAdmin": "REVOKECTL", "snapshot": "REVOKECTL"}
	base := append(snapshotSets("ingest.enabled=true"), "ingest.auth.bearerTokenSecret.name=tok", "nats.tls.caSecret=nats-ca")
	for shift := range modes {
		t.Run(fmt.Sprintf("rotation %d", shift), func(t *testing.T) {
			args := slices.Clone(base)
			want := map[string]string{}
			for i, role := range roles {
				mode := modes[(i+shift)%len(modes)]
				want[role] = mode
				args = append(args, "nats.auth."+role+".type="+mode, "nats.auth."+role+".secretName="+strings.ToLower(role)+"-nats",
					"nats.auth."+role+".clientCertSecret="+strings.ToLower(role)+"-tls")
			}
			m := render(t, sets(args...)...)
			found := roleContainers(t, m)
			for _, role := range roles {
				rc, ok := found[role]
				if !ok {
					t.Fatalf("no container for role %s", role)
				}
				o := natsOptions(t, rc.c, prefix[role])
				got := map[bool]string{o.Creds != "": "creds", o.NKeySeed != "": "nkey", o.User != "" && o.Password != "": "userPassword", o.Token != "": "token"}[true]
				if got != want[role] {
					t.Errorf("%s authenticates by %q, want %s (%+v)", role, got, want[role], o)
				}
				if o.TLSCert == "" || o.TLSCA == "" {
					t.Errorf("%s: no client certificate or CA: %+v", role, o)
				}
				secrets := natsSecrets(rc.spec, rc.c)
				own := strings.ToLower(role) + "-"
				if !secrets[own+"nats"] || !secrets[own+"tls"] {
					t.Errorf("%s: identity from Secrets %v, want %snats and %stls", role, secrets, own, own)
				}
				for s := range secrets {
					if !strings.HasPrefix(s, own) {
						t.Errorf("%s uses Secret %s of another role", role, s)
					}
				}
				for _, a := range rc.c.Args {
					if strings.Contains(a, "secret") && (strings.HasPrefix(a, "--nats-password") || strings.HasPrefix(a, "--nats-token")) {
						t.Errorf("%s: a NATS secret on the command line: %s", role, a)
					}
				}
			}
		})
	}
}

// TestWriterIdentityFailures: the render fails when a writer (ingest, stream init, the
// snapshot job) would run as the sidecars, whose credentials every application pod holds.
func TestWriterIdentityFailures(t *testing.T) {
	sidecar := []string{"sidecar.allowAnyAudience=true", "nats.auth.sidecar.type=creds", "nats.auth.sidecar.secretName=app-nats",
		"nats.auth.streamAdmin.type=creds", "nats.auth.streamAdmin.secretName=admin-nats",
		"nats.auth.snapshot.type=creds", "nats.auth.snapshot.secretName=snap-nats"} // snapshots are on by default
	ingest := []string{"ingest.enabled=true", "ingest.auth.bearerTokenSecret.name=tok"}
	cases := map[string]struct {
		sets []string
		want string
	}{
		"ingest with the sidecars' Secret": {append(slices.Concat(sidecar, ingest), "nats.auth.ingest.type=token", "nats.auth.ingest.secretName=app-nats"),
			"nats.auth.ingest.secretName is the sidecars' Secret"},
		"ingest without an identity": {slices.Concat(sidecar, ingest), "the ingest API (it publishes revocations) has no NATS identity of its own"},
		"stream init with the sidecars' Secret": {append(slices.Clone(sidecar), "nats.auth.streamAdmin.secretName=app-nats"),
			"nats.auth.streamAdmin.secretName is the sidecars' Secret"},
		"stream init without an identity": {append(slices.Clone(sidecar), "nats.auth.streamAdmin.type=none", "nats.auth.streamAdmin.secretName="),
			"the stream-init Job (it creates and changes the stream) has no NATS identity"},
		"snapshot job with the sidecars' Secret": {slices.Concat(sidecar, snapshotSets("nats.auth.snapshot.secretName=app-nats")),
			"nats.auth.snapshot.secretName is the sidecars' Secret"},
		"snapshot job without an identity": {append(slices.Clone(sidecar), "nats.auth.snapshot.type=none", "nats.auth.snapshot.secretName="),
			"the snapshot job (it writes the snapshot every sidecar starts from) has no NATS identity"},
		"ingest with the sidecars' client certificate": {append(slices.Concat(sidecar, ingest), "nats.auth.sidecar.clientCertSecret=app-tls",
			"nats.auth.ingest.clientCertSecret=app-tls"), "nats.auth.ingest.clientCertSecret is the sidecars' client certificate"},
		"a type without its Secret": {[]string{"sidecar.allowAnyAudience=true", "nats.auth.sidecar.type=nkey"}, "nats.auth.sidecar.type=nkey needs nats.auth.sidecar.secretName"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := helm(t, append([]string{"template", "rel", chartDir}, sets(tc.sets...)...)...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestOneRevocationWindow: revocationWindow is the only window value; it reaches the
// stream (whose MaxAge, as revokectl stream init computes it, covers what every sidecar
// needs to be ready) and every sidecar.
func TestOneRevocationWindow(t *testing.T) {
	for _, window := range []string{"12h", "168h"} {
		m := render(t, sets("sidecar.allowAnyAudience=true", "revocationWindow="+window, "example.enabled=true",
			"sidecar.jwks.url=https://idp/jwks", "sidecar.extraArgs={--leeway=5m}",
			"ingest.enabled=true", "ingest.auth.bearerTokenSecret.name=tok")...)
		// Ingest: the exp of a Shared Signals jwt_id revocation, the oldest SET accepted.
		if _, c := ingestPod(t, m); flags(c)["max-token-lifetime"] != window {
			t.Errorf("ingest --max-token-lifetime %s, want revocationWindow %s", flags(c)["max-token-lifetime"], window)
		}
		if len(m.jobs) != 1 {
			t.Fatalf("%d Jobs", len(m.jobs))
		}
		lifetime, err := time.ParseDuration(flags(m.jobs[0].Spec.Template.Spec.Containers[0])["max-token-lifetime"])
		if err != nil {
			t.Fatal(err)
		}
		maxAge := stream.Config(stream.Settings{MaxTokenLifetime: lifetime}).MaxAge
		sidecars := 0
		for _, p := range m.podSpecs() {
			for _, c := range append(slices.Clone(p.spec.InitContainers), p.spec.Containers...) {
				if c.Name != "revoked" {
					continue
				}
				sidecars++
				f := flags(c)
				if f["max-token-lifetime"] != window {
					t.Errorf("%s: --max-token-lifetime %s, want revocationWindow %s", p.name, f["max-token-lifetime"], window)
				}
				sl, _ := time.ParseDuration(f["max-token-lifetime"])
				leeway := revflags.DefaultLeeway
				if l, ok := f["leeway"]; ok {
					leeway, _ = time.ParseDuration(l)
				}
				if !stream.CoversWindow(maxAge, sl, leeway) {
					t.Errorf("%s: the stream keeps %s, the sidecar needs %s: it would never be ready", p.name, maxAge, stream.MinMaxAge(sl, leeway))
				}
			}
		}
		if sidecars != 2 {
			t.Errorf("%d sidecars, want the example's and the test pod's", sidecars)
		}
	}
}

// TestLibraryChartVendored: the revoked chart takes the sidecar's templates from
// charts/revoked-sidecar through a file:// dependency, vendored by helm dependency build,
// and the vendored archive is the source as it stands (run `helm dependency build
// charts/revoked` after changing the library).
func TestLibraryChartVendored(t *testing.T) {
	out, err := helm(t, "dependency", "list", chartDir)
	if err != nil {
		t.Fatal(err)
	}
	if !regexpOK(out) {
		t.Fatalf("helm dependency list:\n%s", out)
	}
	archive := filepath.Join(chartDir, "charts", "revoked-sidecar-0.1.0.tgz")
	vendored := untar(t, archive)
	source := map[string]string{}
	err = filepath.WalkDir("revoked-sidecar", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		source[filepath.ToSlash(p)] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range source {
		if strings.HasSuffix(name, "/Chart.yaml") {
			// helm package writes Chart.yaml back from what it parsed: compare the fields.
			var a, b map[string]any
			if yaml.Unmarshal([]byte(data), &a) != nil || yaml.Unmarshal([]byte(vendored[name]), &b) != nil || fmt.Sprint(a) != fmt.Sprint(b) {
				t.Errorf("%s differs from %s: run helm dependency build %s", name, archive, chartDir)
			}
			continue
		}
		if vendored[name] != data {
			t.Errorf("%s differs from %s: run helm dependency build %s", name, archive, chartDir)
		}
	}
	for name := range vendored {
		if _, ok := source[name]; !ok {
			t.Errorf("%s holds %s, which the source does not", archive, name)
		}
	}
	// The library's defaults are the revoked chart's for the same keys: one values file
	// serves the platform's chart and the applications'.
	var lib, main map[string]any
	for p, v := range map[string]*map[string]any{"revoked-sidecar/values.yaml": &lib, chartDir + "/values.yaml": &main} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(data, v); err != nil {
			t.Fatal(err)
		}
	}
	compareDefaults(t, "", lib, main)
}

func regexpOK(out string) bool {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[0] == "revoked-sidecar" && f[len(f)-1] == "ok" {
			return true
		}
	}
	return false
}

func untar(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if _, err := io.Copy(&b, tr); err != nil {
			t.Fatal(err)
		}
		out[h.Name] = b.String()
	}
}

// compareDefaults checks that every default of the library is the main chart's.
func compareDefaults(t *testing.T, path string, lib, main map[string]any) {
	t.Helper()
	for k, v := range lib {
		where := strings.TrimPrefix(path+"."+k, ".")
		mv, ok := main[k]
		if !ok {
			t.Errorf("%s: a library default the revoked chart does not have", where)
			continue
		}
		if sub, ok := v.(map[string]any); ok {
			msub, ok := mv.(map[string]any)
			if !ok {
				t.Errorf("%s: a map in the library, %T in the revoked chart", where, mv)
				continue
			}
			compareDefaults(t, where, sub, msub)
			continue
		}
		if fmt.Sprint(v) != fmt.Sprint(mv) {
			t.Errorf("%s: library default %v, revoked chart %v", where, v, mv)
		}
	}
}

// TestLibraryChartApp renders testdata/app, an application chart that depends on the
// library chart (helm dependency build, offline through file://): its pods get the
// sidecar with its values, native on 1.29 and later, and it renders no hook, Job, CronJob
// or test pod of the platform's chart.
func TestLibraryChartApp(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "revoked-sidecar"), os.DirFS("revoked-sidecar")); err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(dir, "testdata", "app")
	if err := os.CopyFS(app, os.DirFS(filepath.Join("testdata", "app"))); err != nil {
		t.Fatal(err)
	}
	if out, err := helm(t, "dependency", "build", app); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for kube, native := range map[string]bool{"1.31.0": true, "1.28.0": false} {
		t.Run(kube, func(t *testing.T) {
			out, err := helm(t, "template", "shop", app, "--namespace", "shop", "--kube-version", kube)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(out, "helm.sh/hook") {
				t.Error("the app chart renders a Helm hook")
			}
			m := decodeAll(t, out)
			for k, n := range m.kinds {
				if k != "Deployment" && k != "NetworkPolicy" {
					t.Errorf("the app chart renders %d %s", n, k)
				}
			}
			if len(m.deployments) != 1 {
				t.Fatalf("%d Deployments", len(m.deployments))
			}
			spec := m.deployments[0].Spec.Template.Spec
			checkPod(t, "shop", spec)
			rc, isNative := revokedContainer(t, "shop", spec)
			if isNative != native {
				t.Errorf("native sidecar %v on Kubernetes %s, want %v", isNative, kube, native)
			}
			checkSidecar(t, "shop revoked", rc)
			checkShutdown(t, "shop", spec, rc)
			f := flags(rc)
			if f["grpc-addr"] != "unix:///var/run/revoked/revoked.sock" || f["max-token-lifetime"] != "12h" || f["audience"] != "api://shop" {
				t.Errorf("the app's values did not reach the sidecar: %v", rc.Args)
			}
			if !natsSecrets(spec, rc)["shop-nats"] {
				t.Errorf("the sidecar does not authenticate with the app's Secret: %v", rc.Args)
			}
			if rc.Image != "ghcr.io/revoked-dev/revoked:0.1.0" {
				t.Errorf("image %s, want the library's appVersion", rc.Image)
			}
			if len(m.netpols) != 1 || len(m.netpols[0].Spec.Egress) != 2 {
				t.Fatalf("the app's NetworkPolicy with revoked.natsEgress: %+v", m.netpols)
			}
		})
	}
}

// checkShutdown checks a clean rollout: the process keeps answering for a shutdown delay
// after SIGTERM (--shutdown-delay), and the pod's grace period covers that delay and the
// in-flight work after it (--shutdown-timeout).
func checkShutdown(t *testing.T, where string, spec corev1.PodSpec, c corev1.Container) {
	t.Helper()
	f := flags(c)
	delay, err := time.ParseDuration(f["shutdown-delay"])
	if err != nil || delay <= 0 {
		t.Errorf("%s: --shutdown-delay %q: the process stops answering at SIGTERM while Envoy or the Service still sends", where, f["shutdown-delay"])
	}
	timeout := revflags.DefaultShutdownTimeout
	if v, ok := f["shutdown-timeout"]; ok {
		timeout, _ = time.ParseDuration(v)
	}
	grace := int64(30)
	if spec.TerminationGracePeriodSeconds != nil {
		grace = *spec.TerminationGracePeriodSeconds
	}
	if time.Duration(grace)*time.Second < delay+timeout {
		t.Errorf("%s: grace period %ds < shutdown delay %s + shutdown timeout %s", where, grace, delay, timeout)
	}
}

// TestNativeSidecarAuto: by default the example's sidecar is native where the cluster
// supports it (1.29 and later) and a regular container before.
func TestNativeSidecarAuto(t *testing.T) {
	for kube, native := range map[string]bool{"1.29.0": true, "1.28.3": false} {
		m := render(t, append(sets("sidecar.allowAnyAudience=true", "example.enabled=true", "sidecar.jwks.url=https://idp/jwks"),
			"--kube-version", kube)...)
		for _, d := range m.deployments {
			rc, isNative := revokedContainer(t, d.Name, d.Spec.Template.Spec)
			if isNative != native {
				t.Errorf("Kubernetes %s: native %v, want %v", kube, isNative, native)
			}
			checkShutdown(t, d.Name, d.Spec.Template.Spec, rc)
		}
	}
	// An explicit false wins on a recent cluster.
	m := render(t, sets("sidecar.allowAnyAudience=true", "example.enabled=true", "sidecar.jwks.url=https://idp/jwks", "sidecar.native=false")...)
	if _, native := revokedContainer(t, "example", m.deployments[0].Spec.Template.Spec); native {
		t.Error("sidecar.native=false rendered a native sidecar")
	}
}

// TestPodSettingsEverywhere sets the pod settings of every workload (the ingest API, the
// example, both Jobs, the test pod) and finds each on its pod.
func TestPodSettingsEverywhere(t *testing.T) {
	args := append(snapshotSets("example.enabled=true"), "ingest.enabled=true", "ingest.auth.bearerTokenSecret.name=tok",
		"imagePullSecrets[0].name=regcred")
	for _, w := range []string{"ingest", "example", "streamInit", "snapshot", "tests"} {
		p := w + ".pod."
		args = append(args, p+"annotations.who="+w, p+"labels.who="+w, p+"nodeSelector.pool=platform",
			p+"tolerations[0].key=dedicated", p+"tolerations[0].operator=Exists", p+"priorityClassName=high",
			p+"topologySpreadConstraints[0].maxSkew=1", p+"topologySpreadConstraints[0].topologyKey=zone",
			p+"topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
			p+"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=arch",
			p+"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
			p+"extraVolumes[0].name=extra", p+"extraVolumes[0].emptyDir.sizeLimit=1Mi",
			p+"extraVolumeMounts[0].name=extra", p+"extraVolumeMounts[0].mountPath=/extra",
			p+"extraEnv[0].name=EXTRA", p+"extraEnv[0].value="+w)
	}
	m := render(t, sets(args...)...)
	type podOf struct {
		meta map[string]string
		spec corev1.PodSpec
	}
	pods := map[string]podOf{}
	for _, d := range m.deployments {
		pods[d.Labels["app.kubernetes.io/component"]] = podOf{d.Spec.Template.Annotations, d.Spec.Template.Spec}
	}
	for _, j := range m.jobs {
		pods["stream-init"] = podOf{j.Spec.Template.Annotations, j.Spec.Template.Spec}
	}
	for _, j := range m.cronJobs {
		pods["snapshot"] = podOf{j.Spec.JobTemplate.Spec.Template.Annotations, j.Spec.JobTemplate.Spec.Template.Spec}
	}
	for _, p := range m.pods {
		pods["test"] = podOf{p.Annotations, p.Spec}
	}
	if len(pods) != 5 {
		t.Fatalf("pods %v, want 5 workloads", slices.Collect(func(yield func(string) bool) {
			for k := range pods {
				yield(k)
			}
		}))
	}
	for name, p := range pods {
		checkPod(t, name, p.spec)
		s := p.spec
		if p.meta["who"] == "" || s.NodeSelector["pool"] != "platform" || len(s.Tolerations) != 1 || s.PriorityClassName != "high" ||
			len(s.TopologySpreadConstraints) != 1 || s.Affinity == nil || s.Affinity.NodeAffinity == nil {
			t.Errorf("%s: pod settings missing: annotations %v, %+v", name, p.meta, s)
		}
		if len(s.ImagePullSecrets) != 1 || s.ImagePullSecrets[0].Name != "regcred" {
			t.Errorf("%s: imagePullSecrets %v", name, s.ImagePullSecrets)
		}
		if !slices.ContainsFunc(s.Volumes, func(v corev1.Volume) bool { return v.Name == "extra" }) {
			t.Errorf("%s: no extra volume", name)
		}
		found := false
		for _, c := range s.Containers {
			found = found || slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.MountPath == "/extra" }) &&
				slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "EXTRA" })
		}
		if !found {
			t.Errorf("%s: no container with the extra mount and variable", name)
		}
	}
}

// TestNetworkPolicies renders ci/ingest-values.yaml: the sidecar's pods reach only NATS
// and DNS; the ingest API takes calls only from the configured range, on its API port,
// and /metrics only from the monitoring namespace; the Jobs reach only NATS and DNS.
func TestNetworkPolicies(t *testing.T) {
	m := render(t, "-f", filepath.Join(chartDir, "ci", "ingest-values.yaml"))
	byName := map[string]int{}
	for i, np := range m.netpols {
		byName[strings.TrimPrefix(np.Name, "rel-revoked-")] = i
	}
	for _, name := range []string{"sidecar", "ingest", "jobs"} {
		i, ok := byName[name]
		if !ok {
			t.Fatalf("no NetworkPolicy %s: %v", name, byName)
		}
		np := m.netpols[i]
		if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{"Ingress", "Egress"}) {
			t.Errorf("%s: policy types %v", name, np.Spec.PolicyTypes)
		}
		var ports []string
		for _, e := range np.Spec.Egress {
			for _, p := range e.Ports {
				ports = append(ports, fmt.Sprintf("%s/%s", *p.Protocol, p.Port.String()))
			}
			if len(e.To) == 0 && !slices.ContainsFunc(e.Ports, func(p networkingv1.NetworkPolicyPort) bool { return p.Port.IntValue() == 53 }) {
				t.Errorf("%s: egress anywhere on %v", name, e.Ports)
			}
		}
		slices.Sort(ports)
		if !slices.Equal(ports, []string{"TCP/4222", "TCP/53", "UDP/53"}) {
			t.Errorf("%s: egress ports %v, want NATS and DNS only", name, ports)
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil {
			t.Fatal(err)
		}
		selected := 0
		for _, p := range m.podSpecs() {
			if sel.Matches(labels.Set(p.meta)) {
				selected++
			}
		}
		if selected == 0 {
			t.Errorf("%s selects no pod of the chart", name)
		}
	}
	ing := m.netpols[byName["ingest"]]
	if len(ing.Spec.Ingress) != 2 {
		t.Fatalf("ingest ingress rules %+v", ing.Spec.Ingress)
	}
	api, admin := ing.Spec.Ingress[0], ing.Spec.Ingress[1]
	if api.From[0].IPBlock == nil || api.From[0].IPBlock.CIDR != "203.0.113.0/24" || api.Ports[0].Port.IntValue() != 9180 {
		t.Errorf("ingest API ingress %+v", api)
	}
	if admin.From[0].NamespaceSelector == nil || admin.Ports[0].Port.IntValue() != 9181 {
		t.Errorf("ingest admin ingress %+v", admin)
	}
}

// TestIngestExposure: an Ingress and an HTTPRoute send to the API Service's API port, and
// a LoadBalancer takes its source ranges; a single replica renders no PDB.
func TestIngestExposure(t *testing.T) {
	m := render(t, sets("sidecar.allowAnyAudience=true", "ingest.enabled=true", "ingest.auth.bearerTokenSecret.name=tok",
		"ingest.replicaCount=1", "ingest.service.type=LoadBalancer", "ingest.service.loadBalancerSourceRanges={203.0.113.0/24}",
		"ingest.ingress.enabled=true", "ingest.httpRoute.enabled=true", "ingest.httpRoute.parentRefs[0].name=gw",
		"ingest.httpRoute.hostnames={revoked.example.com}")...)
	if len(m.pdbs) != 0 {
		t.Error("a PodDisruptionBudget with one replica blocks every node drain")
	}
	checkIngest(t, m)
	var api *corev1.Service
	for i := range m.services {
		if strings.HasSuffix(m.services[i].Name, "-ingest") {
			api = &m.services[i]
		}
	}
	if api == nil || !slices.Equal(api.Spec.LoadBalancerSourceRanges, []string{"203.0.113.0/24"}) {
		t.Fatalf("ingest Service %+v", api)
	}
	if len(m.ingresses) != 1 || m.ingresses[0].Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name != api.Name ||
		m.ingresses[0].Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Name != "api" {
		t.Errorf("Ingress %+v", m.ingresses)
	}
	if len(m.httpRoutes) != 1 || m.httpRoutes[0].Spec.Rules[0].BackendRefs[0].Name != api.Name ||
		m.httpRoutes[0].Spec.Rules[0].BackendRefs[0].Port != api.Spec.Ports[0].Port {
		t.Errorf("HTTPRoute %+v", m.httpRoutes)
	}
}

// TestGoRuntimeLimits: GOMEMLIMIT is derived from the memory limit (90%), GOMAXPROCS from
// the CPU limit when there is one, else from gc.maxProcs.
func TestGoRuntimeLimits(t *testing.T) {
	env := func(d appsv1.Deployment) map[string]corev1.EnvVar {
		rc, _ := revokedContainer(t, d.Name, d.Spec.Template.Spec)
		out := map[string]corev1.EnvVar{}
		for _, e := range rc.Env {
			out[e.Name] = e
		}
		return out
	}
	base := []string{"sidecar.allowAnyAudience=true", "example.enabled=true", "sidecar.jwks.url=https://idp/jwks"}
	m := render(t, sets(append(base, "sidecar.resources.limits.memory=256Mi")...)...)
	e := env(m.deployments[0])
	if want := strconv.Itoa(256 << 20 * 90 / 100); e["GOMEMLIMIT"].Value != want {
		t.Errorf("GOMEMLIMIT %q with a 256Mi limit, want %s", e["GOMEMLIMIT"].Value, want)
	}
	if e["GOMAXPROCS"].Value != "2" {
		t.Errorf("GOMAXPROCS %+v without a CPU limit, want gc.maxProcs", e["GOMAXPROCS"])
	}
	m = render(t, sets(append(base, "sidecar.resources.limits.cpu=1500m", "sidecar.gc.memoryLimitPercent=0")...)...)
	e = env(m.deployments[0])
	if _, ok := e["GOMEMLIMIT"]; ok {
		t.Error("GOMEMLIMIT set with memoryLimitPercent 0")
	}
	if r := e["GOMAXPROCS"].ValueFrom; r == nil || r.ResourceFieldRef == nil || r.ResourceFieldRef.Resource != "limits.cpu" || r.ResourceFieldRef.ContainerName != "revoked" {
		t.Errorf("GOMAXPROCS %+v with a CPU limit, want limits.cpu of revoked", e["GOMAXPROCS"])
	}
	if _, err := helm(t, append([]string{"template", "rel", chartDir}, sets(append(base, "sidecar.resources.limits.memory=1.5Gi")...)...)...); err == nil ||
		!strings.Contains(err.Error(), "memoryLimitPercent") {
		t.Errorf("a fractional memory limit: %v", err)
	}
}

// TestSafeDefaults: without audiences the chart refuses to render (unless the opt-out
// says so), and schedules in Kubernetes' @ forms are accepted.
func TestSafeDefaults(t *testing.T) {
	_, err := helm(t, "template", "rel", chartDir)
	if err == nil || !strings.Contains(err.Error(), "set sidecar.audiences") {
		t.Errorf("defaults without audiences: %v", err)
	}
	m := render(t, sets(snapshotSets("snapshot.schedule=@hourly")...)...)
	if len(m.cronJobs) != 1 || m.cronJobs[0].Spec.Schedule != "@hourly" {
		t.Errorf("schedule @hourly: %+v", m.cronJobs)
	}
	data, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		KubeVersion string `json:"kubeVersion"`
	}
	if err := yaml.Unmarshal(data, &chart); err != nil || chart.KubeVersion == "" {
		t.Errorf("Chart.yaml kubeVersion %q: %v", chart.KubeVersion, err)
	}
	if _, err := helm(t, "template", "rel", chartDir, "--set", "sidecar.allowAnyAudience=true", "--kube-version", "1.23.0"); err == nil {
		t.Error("rendered for Kubernetes 1.23, below kubeVersion")
	}
}

// TestLibrarySchemaMatches: the library chart's values.schema.json is the revoked chart's,
// cut down to the keys the sidecar uses, so that an application chart's revoked: values
// are refused exactly as the platform's would be (typos included).
func TestLibrarySchemaMatches(t *testing.T) {
	read := func(p string) map[string]any {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return v
	}
	lib, main := read("revoked-sidecar/values.schema.json"), read(chartDir+"/values.schema.json")
	var compare func(path string, l, m map[string]any)
	compare = func(path string, l, m map[string]any) {
		for k, lv := range l {
			if k == "title" && path == "" {
				continue
			}
			mv, ok := m[k]
			if !ok {
				t.Errorf("%s/%s: in the library schema only", path, k)
				continue
			}
			lp, isMap := lv.(map[string]any)
			if (k == "properties" || k == "definitions") && isMap {
				mp, _ := mv.(map[string]any)
				for name, sub := range lp {
					msub, ok := mp[name].(map[string]any)
					if !ok {
						t.Errorf("%s/%s/%s: in the library schema only", path, k, name)
						continue
					}
					compare(path+"/"+k+"/"+name, sub.(map[string]any), msub)
				}
				continue
			}
			if a, b := fmt.Sprint(lv), fmt.Sprint(mv); a != b {
				t.Errorf("%s/%s: library %s, revoked chart %s", path, k, a, b)
			}
		}
	}
	compare("", lib, main)
	// Every default of the library is allowed by its schema: the app chart renders
	// (TestLibraryChartApp); a typo under revoked: is refused.
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "revoked-sidecar"), os.DirFS("revoked-sidecar")); err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(dir, "testdata", "app")
	if err := os.CopyFS(app, os.DirFS(filepath.Join("testdata", "app"))); err != nil {
		t.Fatal(err)
	}
	if out, err := helm(t, "dependency", "build", app); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	_, err := helm(t, "template", "shop", app, "--set", "revoked.sidecar.grpcPort=9191")
	if err == nil || !strings.Contains(err.Error(), "additional properties 'grpcPort' not allowed") {
		t.Errorf("a typo under revoked.sidecar: %v", err)
	}
}

// TestNotes renders NOTES.txt (helm template skips it) through a copy of the chart that
// wraps it in a ConfigMap: it must render, and point at the library chart, the window and
// the ingest admin Service.
func TestNotes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "revoked")
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(dir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"templates/NOTES.txt":  "",
		"templates/_notes.tpl": `{{- define "test.notes" }}` + string(notes) + `{{- end }}`,
		"templates/notes.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  notes: {{ include \"test.notes\" . | quote }}\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if content == "" {
			err = os.Remove(p)
		} else {
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	out, err := helm(t, "template", "rel", dir, "--namespace", "ns", "--show-only", "templates/notes.yaml",
		"-f", filepath.Join(chartDir, "ci", "ingest-values.yaml"), "--set", "revocationWindow=12h", "--set", "cutoffClaims={uid}")
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict([]byte(out), &cm); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"library chart revoked-sidecar", "revocationWindow: 12h", `cutoffClaims: ["uid"]`, `include "revoked.containers" .Subcharts.revoked`,
		"svc/rel-revoked-ingest-admin port 9181",
		`kubectl -n ns get configmap rel-revoked-snapshot-public-key -o jsonpath='{.data.snapshot\.pub}' > snapshot.pub`,
		"kubectl -n APP_NAMESPACE create configmap revoked-snapshot-public-key --from-file=snapshot.pub=snapshot.pub",
		"The signing key was generated by the chart (Secret rel-revoked-snapshot-signing-key"} {
		if !strings.Contains(cm.Data["notes"], want) {
			t.Errorf("NOTES do not say %q:\n%s", want, cm.Data["notes"])
		}
	}
}
