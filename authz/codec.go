package authz

import (
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// GRPCServerOptions are the options the ext_authz gRPC server should be created with:
// a codec that, for a CheckRequest, decodes only the authorization header (the one
// thing GRPCServer.Check reads) instead of every header, peer address and metadata
// Envoy sends. Other messages (health checks) use the standard protobuf codec.
//
// Unmarshalling the whole Envoy-shaped request was the largest server-side cost of a
// check. What the partial decode leaves out is never read; a request the fast path
// does not understand (malformed wire data, invalid UTF-8 in the header it reads) goes
// to the standard decoder, which gives its usual error. Unlike the standard decoder it
// does not check UTF-8 in the fields it skips.
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(checkCodec{std: encoding.GetCodecV2(proto.Name)})}
}

type checkCodec struct{ std encoding.CodecV2 }

func (c checkCodec) Name() string { return proto.Name }

func (c checkCodec) Marshal(v any) (mem.BufferSlice, error) { return c.std.Marshal(v) }

func (c checkCodec) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*authv3.CheckRequest)
	if !ok {
		return c.std.Unmarshal(data, v)
	}
	var b []byte
	if len(data) == 1 {
		b = data[0].ReadOnlyData()
	} else {
		b = data.Materialize()
	}
	if decodeAuthorization(b, req) {
		return nil
	}
	req.Reset()
	return c.std.Unmarshal(data, v)
}

// Field numbers on the path to the headers (envoy.service.auth.v3, envoy.config.core.v3).
const (
	fCheckAttributes  = 1  // CheckRequest.attributes
	fAttrRequest      = 4  // AttributeContext.request
	fRequestHTTP      = 2  // AttributeContext.Request.http
	fHTTPHeaders      = 3  // HttpRequest.headers (map<string, string>)
	fHTTPHeaderMap    = 13 // HttpRequest.header_map
	fHeaderMapHeaders = 1  // HeaderMap.headers
	fHeaderKey        = 1  // HeaderValue.key, and a map entry's key
	fHeaderValue      = 2  // HeaderValue.value, and a map entry's value
	fHeaderRawValue   = 3  // HeaderValue.raw_value
)

// decodeAuthorization fills req with what authorizationHeader reads: the map entry
// "authorization" (the last one, as protobuf merges maps) and the header_map entries
// named authorization, in order. A message field that occurs twice is merged, as
// protobuf does. It reports false on anything it cannot parse.
func decodeAuthorization(b []byte, req *authv3.CheckRequest) bool {
	h := &authv3.AttributeContext_HttpRequest{}
	ok := eachField(b, func(num protowire.Number, v []byte) bool {
		if num != fCheckAttributes {
			return true
		}
		return eachField(v, func(num protowire.Number, v []byte) bool {
			if num != fAttrRequest {
				return true
			}
			return eachField(v, func(num protowire.Number, v []byte) bool {
				if num != fRequestHTTP {
					return true
				}
				return decodeHTTP(v, h)
			})
		})
	})
	if !ok {
		return false
	}
	req.Attributes = &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}
	return true
}

// headerFields reads a map entry (key 1, value 2) or a HeaderValue (key 1, value 2,
// raw_value 3): the field numbers are the same.
func headerFields(b []byte) (key, value, raw []byte, ok bool) {
	ok = eachField(b, func(num protowire.Number, v []byte) bool {
		switch num {
		case fHeaderKey:
			key = v
		case fHeaderValue:
			value = v
		case fHeaderRawValue:
			raw = v
		}
		return true
	})
	return key, value, raw, ok
}

func decodeHTTP(b []byte, h *authv3.AttributeContext_HttpRequest) bool {
	return eachField(b, func(num protowire.Number, v []byte) bool {
		switch num {
		case fHTTPHeaders:
			key, value, _, ok := headerFields(v)
			if !ok {
				return false
			}
			if string(key) != "authorization" {
				return true
			}
			if !utf8.Valid(value) {
				return false
			}
			if h.Headers == nil {
				h.Headers = make(map[string]string, 1)
			}
			h.Headers["authorization"] = string(value)
		case fHTTPHeaderMap:
			return eachField(v, func(num protowire.Number, v []byte) bool {
				if num != fHeaderMapHeaders {
					return true
				}
				key, value, raw, ok := headerFields(v)
				if !ok {
					return false
				}
				if string(key) != "authorization" {
					return true
				}
				if !utf8.Valid(value) {
					return false
				}
				if h.HeaderMap == nil {
					h.HeaderMap = &corev3.HeaderMap{}
				}
				hv := &corev3.HeaderValue{Key: "authorization", Value: string(value)}
				if raw != nil {
					hv.RawValue = append([]byte(nil), raw...)
				}
				h.HeaderMap.Headers = append(h.HeaderMap.Headers, hv)
				return true
			})
		}
		return true
	})
}

// eachField calls f with the number and payload of every length-delimited field of the
// message b, skipping fields of other wire types (the fields read here are all
// length-delimited; protobuf keeps one sent with another wire type as an unknown
// field, which nothing reads either).
func eachField(b []byte, f func(protowire.Number, []byte) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return false
			}
			b = b[m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b)
		if m < 0 || !f(num, v) {
			return false
		}
		b = b[m:]
	}
	return true
}
