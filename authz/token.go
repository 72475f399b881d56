package authz

import "strings"

// MaxTokenBytes bounds the token accepted; larger ones are refused before any parsing.
const MaxTokenBytes = 16 << 10

// BearerToken extracts the token from an authorization header value: scheme Bearer in
// any case, one or more spaces, then one compact JWS (three base64url segments). Two
// tokens (Envoy joins repeated headers with a comma) or any other character is malformed.
func BearerToken(header string) (string, Reason) {
	if header == "" {
		return "", ReasonMissingToken
	}
	const scheme = "bearer"
	if len(header) < len(scheme)+1 || !strings.EqualFold(header[:len(scheme)], scheme) || (header[len(scheme)] != ' ' && header[len(scheme)] != '\t') {
		return "", ReasonWrongScheme
	}
	tok := strings.Trim(header[len(scheme):], " \t")
	if tok == "" || len(tok) > MaxTokenBytes {
		return "", ReasonMalformed
	}
	dots := 0
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.':
			dots++
		default:
			return "", ReasonMalformed
		}
	}
	if dots != 2 {
		return "", ReasonMalformed
	}
	return tok, ReasonOK
}
