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
	dots, bad := 0, byte(0)
	for i := 0; i < len(tok); i++ {
		k := tokenChars[tok[i]]
		bad |= k & badChar
		dots += int(k & dotChar)
	}
	if bad != 0 || dots != 2 {
		return "", ReasonMalformed
	}
	return tok, ReasonOK
}

// Classes of the bytes of a compact JWS: base64url (0), '.' (dotChar), any other byte
// (badChar). A table lookup per byte, with no branch, is what keeps BearerToken cheap
// on the cached path, where it is the largest cost.
const (
	dotChar = 1
	badChar = 2
)

var tokenChars = func() (t [256]byte) {
	for c := range t {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.':
			t[c] = dotChar
		default:
			t[c] = badChar
		}
	}
	return t
}()
