package ssf

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// subject is one simple subject identifier (RFC 9493, SSF 1.0 section 3): the formats
// the receiver can turn into a revocation.
type subject struct {
	format string // iss_sub, opaque, email, jwt_id
	iss    string // iss_sub, jwt_id
	value  string // sub, id, email or jti
}

// target is what a SET's subject names: a user, a session of it, or one token.
type target struct {
	user    *subject // iss_sub, opaque or email
	session string   // complex.session's id
	token   *subject // jwt_id
	tenant  string   // complex.tenant's id: recorded, not matched
}

// errSubject is a subject the receiver cannot read or cannot act on.
type errSubject struct{ msg string }

func (e errSubject) Error() string { return "subject: " + e.msg }

func subjectErr(format string, a ...any) error { return errSubject{fmt.Sprintf(format, a...)} }

// complexMembers are the members of a complex subject (SSF 1.0 section 3.2).
var complexMembers = []string{"user", "device", "session", "application", "tenant", "org_unit", "group"}

// decodeSubject reads a subject identifier: a simple one, complex (user, session,
// tenant), or aliases. With the subject_type quirk, a legacy RISC "subject_type" stands
// for the format.
func decodeSubject(raw json.RawMessage, q Quirks) (target, error) {
	var t target
	m, err := members(raw)
	if err != nil {
		return t, err
	}
	format, err := formatOf(m, q)
	if err != nil {
		return t, err
	}
	if format == "" && hasAny(m, complexMembers) {
		format = "complex" // SSF drafts wrote complex subjects without a format
	}
	switch format {
	case "complex":
		return decodeComplex(m, q)
	case "aliases":
		return decodeAliases(m, q)
	}
	s, err := simple(m, format)
	if err != nil {
		return t, err
	}
	return s.target(), nil
}

func (s *subject) target() target {
	if s.format == "jwt_id" {
		return target{token: s}
	}
	return target{user: s}
}

func decodeComplex(m map[string]json.RawMessage, q Quirks) (target, error) {
	var t target
	if raw, ok := m["user"]; ok {
		u, err := simpleRaw(raw, q)
		if err != nil {
			return t, fmt.Errorf("complex.user: %w", err)
		}
		if u.format == "jwt_id" {
			return t, subjectErr("complex.user is a jwt_id")
		}
		t.user = u
	}
	if raw, ok := m["session"]; ok {
		sm, err := members(raw)
		if err != nil {
			return t, fmt.Errorf("complex.session: %w", err)
		}
		if sid, ok := stringMember(sm, "sid"); ok && sid != "" {
			t.session = sid
		} else {
			s, err := simpleRaw(raw, q)
			if err != nil {
				return t, fmt.Errorf("complex.session: %w", err)
			}
			if s.format != "opaque" {
				return t, subjectErr("complex.session format %.32q, want opaque", s.format)
			}
			t.session = s.value
		}
	}
	if raw, ok := m["tenant"]; ok {
		if s, err := simpleRaw(raw, q); err == nil {
			t.tenant = s.value
		}
	}
	if t.user == nil && t.session == "" {
		return t, subjectErr("complex subject names neither a user nor a session")
	}
	return t, nil
}

// decodeAliases takes the first identifier the receiver can act on: a jwt_id, else a
// user (iss_sub, opaque, email).
func decodeAliases(m map[string]json.RawMessage, q Quirks) (target, error) {
	var ids []json.RawMessage
	if err := json.Unmarshal(m["identifiers"], &ids); err != nil || len(ids) == 0 {
		return target{}, subjectErr("aliases needs a non-empty identifiers array")
	}
	var first *subject
	var errs []error
	for i, raw := range ids {
		s, err := simpleRaw(raw, q)
		if err != nil {
			errs = append(errs, fmt.Errorf("aliases[%d]: %w", i, err))
			continue
		}
		if s.format == "jwt_id" {
			return s.target(), nil
		}
		if first == nil {
			first = s
		}
	}
	if first == nil {
		return target{}, errors.Join(errs...)
	}
	return first.target(), nil
}

// simpleRaw reads a simple subject (aliases and complex may not nest).
func simpleRaw(raw json.RawMessage, q Quirks) (*subject, error) {
	m, err := members(raw)
	if err != nil {
		return nil, err
	}
	format, err := formatOf(m, q)
	if err != nil {
		return nil, err
	}
	return simple(m, format)
}

func simple(m map[string]json.RawMessage, format string) (*subject, error) {
	var s subject
	var ok bool
	switch format {
	case "iss_sub":
		s.iss, ok = stringMember(m, "iss")
		if ok {
			s.value, ok = stringMember(m, "sub")
		}
	case "opaque":
		s.value, ok = stringMember(m, "id")
	case "email":
		s.value, ok = stringMember(m, "email")
	case "jwt_id":
		s.iss, ok = stringMember(m, "iss")
		if ok {
			s.value, ok = stringMember(m, "jti")
		}
	case "":
		return nil, subjectErr("no format")
	case "complex", "aliases":
		return nil, subjectErr("%s may not nest here", format)
	default:
		return nil, subjectErr("format %.32q is not one the receiver can revoke by", format)
	}
	if !ok || s.value == "" || (s.iss == "" && (format == "iss_sub" || format == "jwt_id")) {
		return nil, subjectErr("%s subject lacks its members", format)
	}
	s.format = format
	return &s, nil
}

// formatOf returns the subject's format, or its legacy subject_type under the quirk.
func formatOf(m map[string]json.RawMessage, q Quirks) (string, error) {
	if raw, ok := m["format"]; ok {
		var f string
		if err := json.Unmarshal(raw, &f); err != nil {
			return "", subjectErr("format is not a string")
		}
		return f, nil
	}
	if st, ok := stringMember(m, "subject_type"); ok && q.SubjectType {
		switch strings.ReplaceAll(st, "-", "_") {
		case "iss_sub", "id_token_claims":
			return "iss_sub", nil
		case "email":
			return "email", nil
		}
		return st, nil
	}
	return "", nil
}

func members(raw json.RawMessage) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, subjectErr("not a JSON object")
	}
	return m, nil
}

func stringMember(m map[string]json.RawMessage, name string) (string, bool) {
	raw, ok := m[name]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func hasAny(m map[string]json.RawMessage, names []string) bool {
	for _, n := range names {
		if _, ok := m[n]; ok {
			return true
		}
	}
	return false
}
