package envoy

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
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
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
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
	var pdb policyv1.PodDisruptionBudget
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
		case "PodDisruptionBudget":
			decode(t, d, &pdb)
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

	// A shared service: replicas spread, a drain keeps one, a rollout is answered.
	if pdb.Spec.Selector == nil || !labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(labels.Set(dep.Spec.Template.Labels)) {
		t.Error("no PodDisruptionBudget selecting the revoked pods")
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() >= int(*dep.Spec.Replicas) {
		t.Errorf("PodDisruptionBudget minAvailable %v with %d replicas", pdb.Spec.MinAvailable, *dep.Spec.Replicas)
	}
	if len(dep.Spec.Template.Spec.TopologySpreadConstraints) == 0 {
		t.Error("no topology spread: every replica may land on one node")
	}
	if !slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--shutdown-delay=") && a != "--shutdown-delay=0s" }) {
		t.Error("no shutdown delay: checks fail while the Gateway still sends to a terminating pod")
	}
	if !slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--audience=") }) {
		t.Error("no --audience: tokens for any service of the IdP pass")
	}

	// The check's budget and what it is sent.
	d, err := time.ParseDuration(obj(t, ext, "timeout").(string))
	if err != nil || d <= 0 || d > maxTimeout {
		t.Errorf("extAuth.timeout %v (%v), want (0, %v]: Envoy Gateway's default is 10 s", d, err, maxTimeout)
	}
	var sent []string
	for _, h := range obj(t, ext, "headersToExtAuth").([]any) {
		sent = append(sent, strings.ToLower(h.(string)))
	}
	if !slices.Equal(sent, []string{"authorization"}) {
		t.Errorf("headersToExtAuth %v, want [authorization]: revoked reads nothing else", sent)
	}

	// No client-sent subject header: refused with underscores, removed before routing.
	header := subjectHeader(t)
	ctp := one(t, "gateway/client-traffic-policy.yaml")
	if obj(t, ctp, "kind") != "ClientTrafficPolicy" || obj(t, ctp, "spec", "targetRefs", 0, "kind") != "Gateway" {
		t.Fatal("client-traffic-policy.yaml is not a ClientTrafficPolicy on a Gateway")
	}
	if a := obj(t, ctp, "spec", "headers", "withUnderscoresAction"); a != "RejectRequest" {
		t.Errorf("withUnderscoresAction %v, want RejectRequest", a)
	}
	if !slices.Contains(obj(t, ctp, "spec", "headers", "earlyRequestHeaders", "remove").([]any), any(header)) {
		t.Errorf("earlyRequestHeaders does not remove %s", header)
	}
}

// TestIstioHeaderStrip: the EnvoyFilter for the workload's inbound listener refuses
// header names with underscores and removes the client's subject header first in the
// chain; each patch decodes strictly into Envoy's own types, and what it sets validates.
func TestIstioHeaderStrip(t *testing.T) {
	header := subjectHeader(t)
	ef := one(t, "istio/envoy-filter.yaml")
	ap := one(t, "istio/authorization-policy.yaml")
	if obj(t, ef, "kind") != "EnvoyFilter" {
		t.Fatal("envoy-filter.yaml is not an EnvoyFilter")
	}
	if fmt.Sprint(obj(t, ef, "spec", "workloadSelector", "labels")) != fmt.Sprint(obj(t, ap, "spec", "selector", "matchLabels")) {
		t.Error("the EnvoyFilter and the AuthorizationPolicy select different workloads")
	}
	var rejects, strips bool
	for _, p := range obj(t, ef, "spec", "configPatches").([]any) {
		if c := obj(t, p, "match", "context"); c != "SIDECAR_INBOUND" {
			t.Errorf("patch on %v, want SIDECAR_INBOUND (where CUSTOM ext_authz runs)", c)
		}
		js, err := json.Marshal(obj(t, p, "patch", "value"))
		if err != nil {
			t.Fatal(err)
		}
		switch obj(t, p, "applyTo") {
		case "NETWORK_FILTER":
			var v struct {
				TypedConfig json.RawMessage `json:"typed_config"`
			}
			if err := json.Unmarshal(js, &v); err != nil {
				t.Fatal(err)
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := protojson.Unmarshal(stripType(t, v.TypedConfig), hcm); err != nil {
				t.Fatalf("HCM patch: %v", err)
			}
			// A MERGE patch is partial (no stat_prefix, no routes): validate what it sets.
			if err := Validate(hcm.GetCommonHttpProtocolOptions()); err != nil {
				t.Fatalf("HCM patch: %v", err)
			}
			rejects = hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction() == corev3.HttpProtocolOptions_REJECT_REQUEST
		case "HTTP_FILTER":
			hf := &hcmv3.HttpFilter{}
			if err := protojson.Unmarshal(js, hf); err != nil {
				t.Fatalf("HTTP filter patch: %v", err)
			}
			if err := Validate(hf); err != nil {
				t.Fatalf("HTTP filter patch: %v", err)
			}
			if op := obj(t, p, "patch", "operation"); op != "INSERT_FIRST" {
				t.Errorf("header strip %v, want INSERT_FIRST (before ext_authz)", op)
			}
			hm := &headermutationv3.HeaderMutation{}
			if err := hf.GetTypedConfig().UnmarshalTo(hm); err != nil {
				t.Fatal(err)
			}
			for _, m := range hm.GetMutations().GetRequestMutations() {
				strips = strips || m.GetRemove() == header
			}
		}
	}
	if !rejects || !strips {
		t.Errorf("underscores refused %v, %s removed %v", rejects, header, strips)
	}
}

// stripType drops the "@type" of a typed_config so that it decodes as the message itself.
func stripType(t *testing.T, raw json.RawMessage) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "@type")
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
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

// subjectHeader is revoked's --subject-header default: the header it sets upstream with
// the token's sub, which the app trusts.
func subjectHeader(t *testing.T) string {
	t.Helper()
	var s sidecar.Settings
	fs := flag.NewFlagSet("revoked", flag.ContinueOnError)
	s.RegisterFlags(fs)
	f := fs.Lookup("subject-header")
	if f == nil || f.DefValue == "" {
		t.Fatal("revoked has no --subject-header default")
	}
	return f.DefValue
}

// TestSubjectHeaderNeverFromClient: through every bootstrap as shipped, a client's
// x-revoked-sub (or x_revoked_sub) never reaches the app: names with underscores are
// refused, the header is removed before ext_authz, and on routes without the check too.
// Each weakening of a shipped config below is caught.
func TestSubjectHeaderNeverFromClient(t *testing.T) {
	header := subjectHeader(t)
	for name := range bootstraps {
		t.Run(name, func(t *testing.T) {
			doc, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Load(doc)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckSubjectHeader(b, header); err != nil {
				t.Fatalf("as shipped: %v", err)
			}
			unchecked := 0
			for _, hcm := range connectionManagers(t, doc) {
				for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
					for _, r := range vh.GetRoutes() {
						if _, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"]; ok {
							unchecked++
						}
					}
				}
			}
			if unchecked == 0 {
				t.Error("no route without the check: the route-level strip is not exercised")
			}
			weakened := map[string]func(*hcmv3.HttpConnectionManager){
				"underscores allowed": func(h *hcmv3.HttpConnectionManager) {
					h.CommonHttpProtocolOptions.HeadersWithUnderscoresAction = corev3.HttpProtocolOptions_ALLOW
				},
				"strip after ext_authz": func(h *hcmv3.HttpConnectionManager) {
					f := h.HttpFilters
					f[0], f[1] = f[1], f[0]
				},
				"unchecked route keeps the header": func(h *hcmv3.HttpConnectionManager) {
					for _, vh := range h.GetRouteConfig().GetVirtualHosts() {
						for _, r := range vh.GetRoutes() {
							r.RequestHeadersToRemove = nil
						}
					}
				},
				"checked route drops revoked's header": func(h *hcmv3.HttpConnectionManager) {
					h.GetRouteConfig().RequestHeadersToRemove = []string{header}
				},
			}
			for what, weaken := range weakened {
				b, _ := Load(doc)
				l := b.GetStaticResources().GetListeners()[0]
				f := l.GetFilterChains()[0].GetFilters()[0]
				hcm := &hcmv3.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					t.Fatal(err)
				}
				weaken(hcm)
				a, err := anypb.New(hcm)
				if err != nil {
					t.Fatal(err)
				}
				f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
				if err := CheckSubjectHeader(b, header); err == nil {
					t.Errorf("%s: not caught", what)
				}
			}
		})
	}
}
