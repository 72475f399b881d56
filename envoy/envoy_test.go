package envoy

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/revoked-dev/revoked/internal/sidecar"
)

// The Envoy bootstraps of this directory and the address each one's ext_authz filter must
// call: the sidecar's defaults from the contract (package internal/sidecar), or the socket path.
var bootstraps = map[string]struct {
	grpc bool
	addr string
}{
	"sidecar.yaml":      {grpc: true, addr: sidecar.DefaultGRPCAddr},
	"sidecar-unix.yaml": {grpc: true, addr: "unix://" + SocketPath},
	"sidecar-http.yaml": {grpc: false, addr: sidecar.DefaultHTTPAddr},
}

// maxTimeout bounds the ext_authz timeout: a check is answered in well under 1 ms.
const maxTimeout = 100 * time.Millisecond

func TestBootstraps(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return f == "docker-compose.yaml" })
	for name := range bootstraps {
		if !slices.Contains(files, name) {
			t.Errorf("%s is missing", name)
		}
	}
	for _, name := range files {
		t.Run(name, func(t *testing.T) {
			want, ok := bootstraps[name]
			if !ok {
				t.Fatalf("%s is not in the bootstraps table: add it with the address it must call", name)
			}
			doc, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Load(doc)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			targets, err := ExtAuthzTargets(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(targets) == 0 {
				t.Fatal("no ext_authz filter")
			}
			for _, tg := range targets {
				if tg.GRPC != want.grpc {
					t.Errorf("listener %s: gRPC = %v, want %v", tg.Listener, tg.GRPC, want.grpc)
				}
				if tg.Address != want.addr {
					t.Errorf("listener %s: ext_authz cluster %s at %s, want %s", tg.Listener, tg.Cluster, tg.Address, want.addr)
				}
				if tg.FailureModeAllow {
					t.Errorf("listener %s: failure_mode_allow is true; revoked must fail closed", tg.Listener)
				}
				if tg.APIVersion != corev3.ApiVersion_V3 {
					t.Errorf("listener %s: transport_api_version = %v, want V3", tg.Listener, tg.APIVersion)
				}
				if tg.Timeout <= 0 || tg.Timeout > maxTimeout {
					t.Errorf("listener %s: timeout %v, want (0, %v]", tg.Listener, tg.Timeout, maxTimeout)
				}
			}
			hcms := connectionManagers(t, doc)
			for _, hcm := range hcms {
				checkHCM(t, hcm)
			}
		})
	}
}

// connectionManagers returns the HTTP connection managers of a loaded bootstrap.
func connectionManagers(t *testing.T, doc []byte) []*hcmv3.HttpConnectionManager {
	t.Helper()
	b, err := Load(doc)
	if err != nil {
		t.Fatal(err)
	}
	var out []*hcmv3.HttpConnectionManager
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig().MessageIs(hcm) {
					if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
						t.Fatal(err)
					}
					out = append(out, hcm)
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no http_connection_manager")
	}
	return out
}

// checkHCM checks what every shipped connection manager must do besides calling revoked:
// log the auth server's dynamic metadata, and strip the headers only revoked or Envoy may
// set before ext_authz runs.
func checkHCM(t *testing.T, hcm *hcmv3.HttpConnectionManager) {
	t.Helper()
	logged := map[string]bool{}
	for _, al := range hcm.GetAccessLog() {
		sl := &streamv3.StdoutAccessLog{}
		if err := al.GetTypedConfig().UnmarshalTo(sl); err != nil {
			t.Fatalf("access log %s: %v", al.GetName(), err)
		}
		for _, v := range sl.GetLogFormat().GetJsonFormat().GetFields() {
			logged[v.GetStringValue()] = true
		}
	}
	// The keys of revoked's dynamic_metadata (authz package), in ext_authz's namespace.
	for _, key := range []string{"decision", "reason", "jti_hash"} {
		f := "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:" + key + ")%"
		if !logged[f] {
			t.Errorf("no access log field %s", f)
		}
	}
	var order []string
	removed := map[string]bool{}
	for _, hf := range hcm.GetHttpFilters() {
		order = append(order, hf.GetName())
		hm := &headermutationv3.HeaderMutation{}
		if hf.GetTypedConfig().MessageIs(hm) {
			if err := hf.GetTypedConfig().UnmarshalTo(hm); err != nil {
				t.Fatal(err)
			}
			for _, m := range hm.GetMutations().GetRequestMutations() {
				removed[m.GetRemove()] = true
			}
		}
	}
	want := []string{"envoy.filters.http.header_mutation", "envoy.filters.http.ext_authz", "envoy.filters.http.router"}
	if !slices.Equal(order, want) {
		t.Errorf("http_filters = %v, want %v", order, want)
	}
	for _, h := range []string{"x-revoked-sub", "x-envoy-auth-failure-mode-allowed"} {
		if !removed[h] {
			t.Errorf("client-sent %s is not removed before ext_authz", h)
		}
	}
}

// TestLoadRejects shows that Load fails on what Envoy would refuse, down inside the
// typed configs.
func TestLoadRejects(t *testing.T) {
	good, err := os.ReadFile("sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		old, new string
		wantErr  string
	}{
		"unknown field": {
			old:     "failure_mode_allow: false",
			new:     "failure_mode_allow: false\n              fail_open: false",
			wantErr: "fail_open",
		},
		"unknown typed_config type": {
			old:     "envoy.extensions.filters.http.router.v3.Router",
			new:     "envoy.extensions.filters.http.router.v3.Routr",
			wantErr: "Routr",
		},
		"wrong type": {
			old:     "port_value: 9191",
			new:     "port_value: nine",
			wantErr: "portValue",
		},
		"invalid filter config": {
			old:     "stat_prefix: ingress_http",
			new:     "stat_prefix: \"\"",
			wantErr: "StatPrefix",
		},
		"invalid nested filter config": {
			old:     "cluster_name: revoked }",
			new:     "cluster_name: \"\" }",
			wantErr: "ClusterName",
		},
		"invalid protocol options": {
			old:     "http2_protocol_options: {}",
			new:     "http2_protocol_options: { max_concurrent_streams: 0 }",
			wantErr: "MaxConcurrentStreams",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if !bytes.Contains(good, []byte(tc.old)) {
				t.Fatalf("sidecar.yaml has no %q", tc.old)
			}
			bad := bytes.Replace(good, []byte(tc.old), []byte(tc.new), 1)
			_, err := Load(bad)
			if err == nil {
				t.Fatal("Load accepted it")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

// yamlDocs splits a multi-document YAML file and returns each non-empty document.
func yamlDocs(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, d := range strings.Split("\n"+string(data), "\n---") {
		if strings.TrimSpace(stripComments(d)) != "" {
			out = append(out, []byte(d))
		}
	}
	return out
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func decode(t *testing.T, doc []byte, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
}

// obj reads a path of map keys and list indexes in a YAML document decoded into any.
func obj(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("%v: not a map at %q", path, k)
			}
			v, ok = m[k]
			if !ok {
				t.Fatalf("%v: no key %q", path, k)
			}
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("%v: no item %d", path, k)
			}
			v = l[k]
		}
	}
	return v
}

func one(t *testing.T, path string) any {
	t.Helper()
	docs := yamlDocs(t, path)
	if len(docs) != 1 {
		t.Fatalf("%s: %d documents, want 1", path, len(docs))
	}
	var v any
	decode(t, docs[0], &v)
	return v
}

func hostPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, n
}

func num(t *testing.T, v any) int {
	t.Helper()
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("%v (%T) is not a number", v, v)
	}
	return int(f)
}

// TestIstio checks that the mesh's extension provider, the ServiceEntry and the
// AuthorizationPolicy name the same provider and reach the sidecar's default gRPC address.
func TestIstio(t *testing.T) {
	host, port := hostPort(t, sidecar.DefaultGRPCAddr)
	mesh := one(t, "istio/mesh-config.yaml")
	se := one(t, "istio/service-entry.yaml")
	ap := one(t, "istio/authorization-policy.yaml")

	prov := obj(t, mesh, "spec", "meshConfig", "extensionProviders", 0)
	name := obj(t, prov, "name").(string)
	grpc := obj(t, prov, "envoyExtAuthzGrpc")
	if p := num(t, obj(t, grpc, "port")); p != port {
		t.Errorf("provider port %d, want %d", p, port)
	}
	if obj(t, grpc, "failOpen") != false {
		t.Error("provider failOpen is not false")
	}
	d, err := time.ParseDuration(obj(t, grpc, "timeout").(string))
	if err != nil || d <= 0 || d > maxTimeout {
		t.Errorf("provider timeout %v (%v), want (0, %v]", d, err, maxTimeout)
	}
	svc := obj(t, grpc, "service").(string)

	if obj(t, se, "kind") != "ServiceEntry" {
		t.Fatal("service-entry.yaml is not a ServiceEntry")
	}
	if h := obj(t, se, "spec", "hosts", 0); h != svc {
		t.Errorf("ServiceEntry host %v, want the provider's service %s", h, svc)
	}
	if a := obj(t, se, "spec", "endpoints", 0, "address"); a != host {
		t.Errorf("ServiceEntry endpoint %v, want %s", a, host)
	}
	if p := num(t, obj(t, se, "spec", "ports", 0, "number")); p != port {
		t.Errorf("ServiceEntry port %d, want %d", p, port)
	}
	if p := obj(t, se, "spec", "ports", 0, "protocol"); p != "GRPC" {
		t.Errorf("ServiceEntry protocol %v, want GRPC", p)
	}

	if obj(t, ap, "kind") != "AuthorizationPolicy" {
		t.Fatal("authorization-policy.yaml is not an AuthorizationPolicy")
	}
	if a := obj(t, ap, "spec", "action"); a != "CUSTOM" {
		t.Errorf("action %v, want CUSTOM", a)
	}
	if p := obj(t, ap, "spec", "provider", "name"); p != name {
		t.Errorf("policy provider %v, want %s", p, name)
	}
}

// TestGateway checks that the SecurityPolicy's backend is the Service in revoked.yaml and
// that the Service reaches revoked's gRPC port (the --grpc-addr default port).
func TestGateway(t *testing.T) {
	_, port := hostPort(t, sidecar.DefaultGRPCAddr)
	sp := one(t, "gateway/security-policy.yaml")
	if obj(t, sp, "kind") != "SecurityPolicy" {
		t.Fatal("security-policy.yaml is not a SecurityPolicy")
	}
	ext := obj(t, sp, "spec", "extAuth")
	if obj(t, ext, "failOpen") != false {
		t.Error("extAuth.failOpen is not false")
	}
	ref := obj(t, ext, "grpc", "backendRefs", 0)

	var svc corev1.Service
	var dep appsv1.Deployment
	for _, d := range yamlDocs(t, "gateway/revoked.yaml") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(d, &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "Service":
			decode(t, d, &svc)
		case "Deployment":
			decode(t, d, &dep)
		default:
			t.Fatalf("unexpected kind %q", meta.Kind)
		}
	}
	if obj(t, ref, "name") != svc.Name {
		t.Errorf("backendRef %v, want Service %s", obj(t, ref, "name"), svc.Name)
	}
	if len(svc.Spec.Ports) != 1 || int(svc.Spec.Ports[0].Port) != num(t, obj(t, ref, "port")) || int(svc.Spec.Ports[0].Port) != port {
		t.Fatalf("Service ports %+v, want one port %d, the backendRef's", svc.Spec.Ports, port)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	var cport int32
	for _, p := range c.Ports {
		if p.Name == svc.Spec.Ports[0].TargetPort.StrVal {
			cport = p.ContainerPort
		}
	}
	if int(cport) != port {
		t.Errorf("Service targetPort %v is container port %d, want %d", svc.Spec.Ports[0].TargetPort, cport, port)
	}
	if !slices.Contains(c.Args, "--grpc-addr=0.0.0.0:"+strconv.Itoa(port)) {
		t.Errorf("args %v do not listen on the pod IP at port %d", c.Args, port)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext %+v", sc)
	}
	if r := c.ReadinessProbe; r == nil || r.HTTPGet == nil || r.HTTPGet.Path != "/readyz" {
		t.Errorf("readinessProbe %+v, want /readyz", r)
	}
	if dep.Spec.Template.Spec.SecurityContext.RunAsNonRoot == nil || !*dep.Spec.Template.Spec.SecurityContext.RunAsNonRoot {
		t.Error("pod does not run as non-root")
	}
}

// TestDockerCompose checks that the compose example wires the TCP bootstrap: Envoy loads
// sidecar.yaml and shares revoked's network namespace, so loopback reaches it.
func TestDockerCompose(t *testing.T) {
	f, err := os.Open("docker-compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Services map[string]struct {
			Image       string   `json:"image"`
			Build       any      `json:"build"`
			Command     []string `json:"command"`
			Ports       []string `json:"ports"`
			NetworkMode string   `json:"network_mode"`
			DependsOn   []string `json:"depends_on"`
			Volumes     []string `json:"volumes"`
		} `json:"services"`
	}
	decode(t, data, &c)
	if !slices.Contains(c.Services["envoy"].Volumes, "./sidecar.yaml:/etc/envoy/envoy.yaml:ro") {
		t.Errorf("envoy does not load sidecar.yaml: %v", c.Services["envoy"].Volumes)
	}
	for _, s := range []string{"envoy", "app"} {
		if c.Services[s].NetworkMode != "service:revoked" {
			t.Errorf("%s does not share revoked's network namespace", s)
		}
	}
	if !slices.Contains(c.Services["revoked"].Command, "--dev") {
		t.Error("revoked does not run in --dev mode")
	}
	if !slices.Contains(c.Services["revoked"].Ports, "8000:8000") {
		t.Error("Envoy's listener is not published")
	}
}
