package ssf

import (
	"net/url"
	"slices"
)

// tokenIssuer finds a subject's iss among the transmitter's token_issuers and returns
// the form listed there: the iss the access tokens carry, which the cutoff must name
// to match them. An exact match comes first. Besides it, an http(s) issuer with an
// empty path and the same with "/" are one issuer: RFC 3986 section 6.2.3 makes them
// equivalent, and Google's RISC SETs name "https://accounts.google.com/" while its
// tokens carry "https://accounts.google.com". Any other difference, a trailing slash
// after a path among them, is another issuer, as OpenID Connect's exact comparison
// says: "https://idp/realms/a/" may be an issuer of its own, whose users are not
// "https://idp/realms/a"'s.
func (t *Transmitter) tokenIssuer(iss string) (string, bool) {
	if slices.Contains(t.TokenIssuers, iss) {
		return iss, true
	}
	for _, listed := range t.TokenIssuers {
		if rootEquivalent(listed, iss) {
			return listed, true
		}
	}
	return "", false
}

// rootEquivalent reports whether a and b are one http(s) URL with an empty path, one of
// them with "/" as its path.
func rootEquivalent(a, b string) bool {
	short, long := a, b
	if len(short) > len(long) {
		short, long = long, short
	}
	if long != short+"/" {
		return false
	}
	u, err := url.Parse(short)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" &&
		u.Path == "" && u.RawPath == "" && u.Opaque == "" && !u.ForceQuery && u.RawQuery == "" && u.Fragment == "" && u.User == nil
}
