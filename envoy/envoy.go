// Package envoy holds the Envoy configurations that put revoked in front of an app
// (sidecar*.yaml, istio/, gateway/) and loads an Envoy bootstrap strictly, the way Envoy
// itself would refuse it: unknown fields, unknown typed_config types and values that break
// the API's validation rules are errors.
package envoy

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// Every typed_config the shipped configurations use; protojson resolves "@type"
	// through the registry these imports fill.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// SocketPath is revoked's gRPC Unix socket in the Unix-socket variants: sidecar-unix.yaml
// and the Helm chart's sidecar.transport=unix (revoked --grpc-addr=unix://SocketPath).
const SocketPath = "/var/run/revoked/revoked.sock"

// Load decodes an Envoy bootstrap written in YAML strictly (no unknown fields, every
// "@type" known) and validates it with Validate.
func Load(doc []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, b); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := Validate(b); err != nil {
		return nil, err
	}
	return b, nil
}

// Validate runs ValidateAll on m and on every message packed in a google.protobuf.Any
// inside it, at any depth (typed_config, typed_extension_protocol_options): the generated
// ValidateAll of a message stops at its Any fields.
func Validate(m proto.Message) error {
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	return walk(m.ProtoReflect())
}

func walk(m protoreflect.Message) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList():
			if fd.Message() == nil {
				return true
			}
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = visit(l.Get(i).Message())
			}
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				err = visit(mv.Message())
				return err == nil
			})
		case fd.Message() != nil:
			err = visit(v.Message())
		}
		return err == nil
	})
	return err
}

func visit(m protoreflect.Message) error {
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		return walk(m)
	}
	inner, err := a.UnmarshalNew()
	if err != nil {
		return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
	}
	if err := Validate(inner); err != nil {
		return fmt.Errorf("%s: %w", a.GetTypeUrl(), err)
	}
	return nil
}

// AuthzTarget is where one ext_authz HTTP filter of a bootstrap sends its checks.
type AuthzTarget struct {
	Listener string // listener holding the filter
	GRPC     bool   // gRPC (envoy_grpc); false for HTTP ext_authz (http_service)
	Cluster  string // cluster called
	// Address is the cluster's one endpoint in the form of revoked's --grpc-addr and
	// --http-addr: host:port, or unix:///path for a pipe.
	Address          string
	Timeout          time.Duration
	FailureModeAllow bool
	APIVersion       corev3.ApiVersion
}

// ErrNoEndpoint is returned when an ext_authz cluster does not have exactly one endpoint.
var ErrNoEndpoint = errors.New("ext_authz cluster must have exactly one static endpoint")

// ExtAuthzTargets lists the ext_authz filters of every static listener of b with the
// address each one calls.
func ExtAuthzTargets(b *bootstrapv3.Bootstrap) ([]AuthzTarget, error) {
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}
	var out []AuthzTarget
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig().MessageIs(hcm) {
					if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
						return nil, err
					}
				} else {
					continue
				}
				for _, hf := range hcm.GetHttpFilters() {
					az := &extauthzv3.ExtAuthz{}
					if !hf.GetTypedConfig().MessageIs(az) {
						continue
					}
					if err := hf.GetTypedConfig().UnmarshalTo(az); err != nil {
						return nil, err
					}
					t := AuthzTarget{
						Listener:         l.GetName(),
						FailureModeAllow: az.GetFailureModeAllow(),
						APIVersion:       az.GetTransportApiVersion(),
					}
					if gs := az.GetGrpcService(); gs != nil {
						t.GRPC = true
						t.Cluster = gs.GetEnvoyGrpc().GetClusterName()
						t.Timeout = gs.GetTimeout().AsDuration()
					} else {
						t.Cluster = az.GetHttpService().GetServerUri().GetCluster()
						t.Timeout = az.GetHttpService().GetServerUri().GetTimeout().AsDuration()
					}
					addr, err := endpoint(clusters[t.Cluster])
					if err != nil {
						return nil, fmt.Errorf("listener %s: cluster %q: %w", l.GetName(), t.Cluster, err)
					}
					t.Address = addr
					out = append(out, t)
				}
			}
		}
	}
	return out, nil
}

func endpoint(c *clusterv3.Cluster) (string, error) {
	var addrs []*corev3.Address
	for _, e := range c.GetLoadAssignment().GetEndpoints() {
		for _, lb := range e.GetLbEndpoints() {
			addrs = append(addrs, lb.GetEndpoint().GetAddress())
		}
	}
	if len(addrs) != 1 {
		return "", ErrNoEndpoint
	}
	if p := addrs[0].GetPipe(); p != nil {
		return "unix://" + p.GetPath(), nil
	}
	sa := addrs[0].GetSocketAddress()
	if sa == nil {
		return "", ErrNoEndpoint
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), nil
}

// ErrHeaderSpoofable is returned by CheckSubjectHeader when a client could get its own
// copy of revoked's subject header to the app.
var ErrHeaderSpoofable = errors.New("a client's copy of the header can reach the upstream")

// CheckSubjectHeader checks, in every HTTP connection manager of b, that a client can
// never send header (revoked's --subject-header, x-revoked-sub by default) to the app:
//   - a header name with an underscore is refused (headers_with_underscores_action
//     REJECT_REQUEST): Envoy would pass x_revoked_sub, which CGI-style servers and many
//     frameworks read as x-revoked-sub;
//   - a header_mutation filter removes header before the ext_authz filter, which then
//     sets it from the verified token;
//   - every route on which ext_authz is disabled also removes it (request_headers_to_remove
//     on the route, its virtual host or the route configuration), and no route that is
//     checked removes it after ext_authz, which would drop revoked's own value.
func CheckSubjectHeader(b *bootstrapv3.Bootstrap, header string) error {
	n := 0
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if !f.GetTypedConfig().MessageIs(hcm) {
					continue
				}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					return err
				}
				n++
				if err := checkHCMSubjectHeader(hcm, header); err != nil {
					return fmt.Errorf("listener %s: %w", l.GetName(), err)
				}
			}
		}
	}
	if n == 0 {
		return errors.New("no http_connection_manager")
	}
	return nil
}

func checkHCMSubjectHeader(hcm *hcmv3.HttpConnectionManager, header string) error {
	if a := hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); a != corev3.HttpProtocolOptions_REJECT_REQUEST {
		return fmt.Errorf("%w: headers_with_underscores_action is %s, not REJECT_REQUEST (%s passes)", ErrHeaderSpoofable, a, strings.ReplaceAll(header, "-", "_"))
	}
	strip, authz := -1, -1
	for i, hf := range hcm.GetHttpFilters() {
		hm := &headermutationv3.HeaderMutation{}
		az := &extauthzv3.ExtAuthz{}
		switch {
		case hf.GetTypedConfig().MessageIs(hm):
			if err := hf.GetTypedConfig().UnmarshalTo(hm); err != nil {
				return err
			}
			for _, m := range hm.GetMutations().GetRequestMutations() {
				if strings.EqualFold(m.GetRemove(), header) && strip < 0 {
					strip = i
				}
			}
		case hf.GetTypedConfig().MessageIs(az):
			if authz < 0 {
				authz = i
			}
		}
	}
	if strip < 0 || authz < 0 || strip > authz {
		return fmt.Errorf("%w: no header_mutation filter removes %s before ext_authz", ErrHeaderSpoofable, header)
	}
	rc := hcm.GetRouteConfig()
	if rc == nil {
		return errors.New("no static route_config: the routes cannot be checked")
	}
	stripFilter, authzFilter := hcm.GetHttpFilters()[strip].GetName(), hcm.GetHttpFilters()[authz].GetName()
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			removed := slices.ContainsFunc(slices.Concat(rc.GetRequestHeadersToRemove(), vh.GetRequestHeadersToRemove(), r.GetRequestHeadersToRemove()),
				func(h string) bool { return strings.EqualFold(h, header) })
			checked, err := filterEnabled(authzFilter, vh, r)
			if err != nil {
				return err
			}
			stripped, err := filterEnabled(stripFilter, vh, r)
			if err != nil {
				return err
			}
			where := fmt.Sprintf("virtual host %s route %s", vh.GetName(), r.GetMatch())
			switch {
			case checked && !stripped:
				return fmt.Errorf("%w: %s: the header_mutation filter is disabled", ErrHeaderSpoofable, where)
			case checked && removed:
				return fmt.Errorf("%s: %s is removed after ext_authz set it", where, header)
			case !checked && !removed:
				return fmt.Errorf("%w: %s: ext_authz is disabled and request_headers_to_remove lacks %s", ErrHeaderSpoofable, where, header)
			}
		}
	}
	return nil
}

// filterEnabled reports whether the HTTP filter named name runs on route r of vh: a
// typed_per_filter_config entry (FilterConfig, or ext_authz's ExtAuthzPerRoute) may
// disable it, the route's entry winning over the virtual host's.
func filterEnabled(name string, vh *routev3.VirtualHost, r *routev3.Route) (bool, error) {
	enabled := true
	for _, cfgs := range []map[string]*anypb.Any{vh.GetTypedPerFilterConfig(), r.GetTypedPerFilterConfig()} {
		a, ok := cfgs[name]
		if !ok {
			continue
		}
		fc := &routev3.FilterConfig{}
		per := &extauthzv3.ExtAuthzPerRoute{}
		switch {
		case a.MessageIs(fc):
			if err := a.UnmarshalTo(fc); err != nil {
				return false, err
			}
			enabled = !fc.GetDisabled()
		case a.MessageIs(per):
			if err := a.UnmarshalTo(per); err != nil {
				return false, err
			}
			enabled = !per.GetDisabled()
		}
	}
	return enabled, nil
}
