package ingest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// LogoutMode is what a back-channel logout revokes. It depends on the IdP: a sid
// cutoff revokes nothing when its access tokens carry no sid (Ory Hydra, Auth0).
type LogoutMode string

// The logout modes of --logout-cutoff.
const (
	// LogoutSID is for IdPs whose access tokens carry sid (Keycloak): a logout token
	// with sid becomes a sid cutoff; one with sub only (BCL 1.0: every session of the
	// user at this RP) a sub cutoff restricted to the logging-out client.
	LogoutSID LogoutMode = "sid"
	// LogoutClient is for IdPs whose access tokens carry no sid: a sub cutoff
	// restricted to the logging-out client (the logout token's aud), so that one app's
	// logout leaves the user's tokens at other apps alone. A token without sub cannot
	// name the user and is refused.
	LogoutClient LogoutMode = "client"
	// LogoutUser signs the user out of every client: a sub cutoff, unrestricted.
	LogoutUser LogoutMode = "user"
)

var logoutModes = []LogoutMode{LogoutSID, LogoutClient, LogoutUser}

// logoutPolicy is --logout-cutoff and --logout-allow-missing-exp, parsed.
type logoutPolicy struct {
	fallback LogoutMode
	byIssuer map[string]LogoutMode
	noExp    []string
}

// mode is what a logout by iss revokes.
func (p logoutPolicy) mode(iss string) LogoutMode {
	if m, ok := p.byIssuer[iss]; ok {
		return m
	}
	return p.fallback
}

// expOptional reports whether iss's logout tokens may lack exp.
func (p logoutPolicy) expOptional(iss string) bool { return slices.Contains(p.noExp, iss) }

// logoutPolicy parses the entries of --logout-cutoff: MODE (every issuer) or
// ISSUER=MODE (one issuer; an issuer holds no "=": OpenID issuers have no query).
func (c *Config) logoutPolicy() (logoutPolicy, error) {
	p := logoutPolicy{fallback: LogoutSID, byIssuer: map[string]LogoutMode{}, noExp: c.LogoutNoExp}
	var errs []error
	global := false
	for _, entry := range c.LogoutCutoffs {
		iss, mode, scoped := "", entry, false
		if i := strings.LastIndex(entry, "="); i >= 0 {
			iss, mode, scoped = entry[:i], entry[i+1:], true
		}
		m := LogoutMode(mode)
		switch {
		case !slices.Contains(logoutModes, m):
			errs = append(errs, fmt.Errorf("--logout-cutoff %q: the mode must be sid, client or user", entry))
		case scoped && iss == "":
			errs = append(errs, fmt.Errorf("--logout-cutoff %q: want ISSUER=MODE or MODE", entry))
		case scoped:
			if _, dup := p.byIssuer[iss]; dup {
				errs = append(errs, fmt.Errorf("--logout-cutoff: issuer %s given twice", iss))
			}
			p.byIssuer[iss] = m
		default:
			if global {
				errs = append(errs, errors.New("--logout-cutoff: more than one MODE for every issuer"))
			}
			global, p.fallback = true, m
		}
	}
	for iss := range p.byIssuer {
		if len(c.Issuers) > 0 && !slices.Contains(c.Issuers, iss) {
			errs = append(errs, fmt.Errorf("--logout-cutoff: %s is not an --issuer", iss))
		}
	}
	for _, iss := range c.LogoutNoExp {
		if len(c.Issuers) > 0 && !slices.Contains(c.Issuers, iss) {
			errs = append(errs, fmt.Errorf("--logout-allow-missing-exp: %s is not an --issuer", iss))
		}
	}
	return p, errors.Join(errs...)
}
