package authz

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// GRPCServer implements envoy.service.auth.v3.Authorization.
type GRPCServer struct {
	authv3.UnimplementedAuthorizationServer
	a             *Authorizer
	subjectHeader string
	denied        [numReasons]*authv3.CheckResponse // built once; responses are read-only
}

// NewGRPCServer returns the gRPC ext_authz server. On OK it sends the token's sub
// upstream in subjectHeader (overwriting any header of that name the client sent).
func NewGRPCServer(a *Authorizer, subjectHeader string) *GRPCServer {
	s := &GRPCServer{a: a, subjectHeader: subjectHeader}
	for _, r := range Reasons() {
		if r != ReasonOK {
			s.denied[r] = deniedResponse(r)
		}
	}
	return s
}

// Check answers one ext_authz request.
func (s *GRPCServer) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	d := s.a.CheckHeaders(authorizationHeader(req.GetAttributes().GetRequest().GetHttp()))
	if !d.Allowed() {
		return s.denied[d.Reason], nil
	}
	if ok := d.Token.rendered.grpc.Load(); ok != nil {
		return ok, nil
	}
	ok := preEncoded(s.allowResponse(d.Token))
	d.Token.rendered.grpc.Store(ok)
	return ok, nil
}

// authorizationHeader finds the authorization header in the map Envoy sends, or in
// header_map when Envoy is set to send raw header bytes, and counts them: n is the
// number of authorization headers the request carried in both forms together, empty
// ones included (Envoy fills only one form; a request with both is refused too).
func authorizationHeader(h *authv3.AttributeContext_HttpRequest) (value string, n int) {
	if v, ok := h.GetHeaders()["authorization"]; ok {
		value, n = v, 1
	}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		if hv.GetKey() != "authorization" {
			continue
		}
		n++
		value = hv.GetValue()
		if value == "" {
			value = string(hv.GetRawValue())
		}
	}
	return value, n
}

func (s *GRPCServer) allowResponse(t *Token) *authv3.CheckResponse {
	up := upstreamFor(t, s.subjectHeader)
	ok := &authv3.OkHttpResponse{HeadersToRemove: up.Remove}
	for _, h := range up.Set {
		ok.Headers = append(ok.Headers, header(h))
	}
	return &authv3.CheckResponse{
		Status:          okStatus,
		HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
		DynamicMetadata: metadata(ReasonOK, t.JTIHash()),
	}
}

// okStatus is shared by every allow response: responses are only ever read (marshalled).
var okStatus = &rpcstatus.Status{Code: int32(code.Code_OK)}

func deniedResponse(r Reason) *authv3.CheckResponse {
	c := code.Code_UNAUTHENTICATED
	if r.HTTPStatus() == 503 {
		c = code.Code_UNAVAILABLE
	}
	d := DenialFor(r)
	denied := &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
		Body:   string(d.Body),
	}
	for _, h := range d.Headers {
		denied.Headers = append(denied.Headers, header(h))
	}
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(c), Message: r.String()},
		HttpResponse:    &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied},
		DynamicMetadata: metadata(r, ""),
	}
}

func header(h Header) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: h.Name, Value: h.Value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// metadata is the dynamic metadata Envoy attaches to the request (namespace
// envoy.filters.http.ext_authz), for access logs: decision, reason, and the jti hash.
// The decision and reason values are shared: a cached token's response holds only its
// own map and hash.
func metadata(r Reason, jtiHash string) *structpb.Struct {
	f := map[string]*structpb.Value{
		"decision": decisionValue[r == ReasonOK],
		"reason":   reasonValue[r],
	}
	if jtiHash != "" {
		f["jti_hash"] = structpb.NewStringValue(jtiHash)
	}
	return &structpb.Struct{Fields: f}
}

var (
	decisionValue = map[bool]*structpb.Value{true: structpb.NewStringValue("allow"), false: structpb.NewStringValue("deny")}
	reasonValue   = func() (v [numReasons]*structpb.Value) {
		for _, r := range Reasons() {
			v[r] = structpb.NewStringValue(r.String())
		}
		return v
	}()
)
