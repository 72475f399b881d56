package authz

import (
	"context"
	"strconv"

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

// allowResponse is a token's OK response, built on its first allowed check and reused.
type allowResponse struct{ grpc *authv3.CheckResponse }

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
	if ok := d.Token.allow.Load(); ok != nil {
		return ok.grpc, nil
	}
	ok := &allowResponse{grpc: s.allowResponse(d.Token)}
	d.Token.allow.Store(ok)
	return ok.grpc, nil
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
	ok := &authv3.OkHttpResponse{}
	if s.subjectHeader != "" {
		ok.Headers = []*corev3.HeaderValueOption{{
			Header:       &corev3.HeaderValue{Key: s.subjectHeader, Value: t.Subject},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}}
		if t.Subject == "" {
			// Nothing to send, but a client-supplied header must not reach the app.
			ok.Headers = nil
			ok.HeadersToRemove = []string{s.subjectHeader}
		}
	}
	return &authv3.CheckResponse{
		Status:          okStatus,
		HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
		DynamicMetadata: metadata(ReasonOK, t.jtiHash),
	}
}

// okStatus is shared by every allow response: responses are only ever read (marshalled).
var okStatus = &rpcstatus.Status{Code: int32(code.Code_OK)}

func deniedResponse(r Reason) *authv3.CheckResponse {
	c := code.Code_UNAUTHENTICATED
	if r.HTTPStatus() == 503 {
		c = code.Code_UNAVAILABLE
	}
	headers := []*corev3.HeaderValueOption{
		header("content-type", "application/json"),
		header("cache-control", "no-store"),
	}
	if w := r.WWWAuthenticate(); w != "" {
		headers = append(headers, header("www-authenticate", w))
	}
	if r.HTTPStatus() == 503 {
		headers = append(headers, header("retry-after", "1"))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(c), Message: r.String()},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(r.HTTPStatus())},
			Headers: headers,
			Body:    string(denialBody(r)),
		}},
		DynamicMetadata: metadata(r, ""),
	}
}

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
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

// denialBody is the JSON body of a denial, RFC 6750 style.
func denialBody(r Reason) []byte {
	switch {
	case r.HTTPStatus() == 503:
		return []byte(`{"error":"temporarily_unavailable","error_description":"` + r.Description() + `"}`)
	case r.Description() == "":
		return []byte(`{"error":"unauthorized","error_description":"bearer token required"}`)
	}
	return []byte(`{"error":"invalid_token","error_description":` + strconv.Quote(r.Description()) + `}`)
}
