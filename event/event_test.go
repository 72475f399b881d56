package event

import (
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	long := strings.Repeat("x", 257)
	cases := []struct {
		name    string
		payload string
		want    error
	}{
		{"jti", `{"type":"jti","jti":"7f3c","exp":1767225600,"iss":"https://idp.example.com","sub":"user-42","reason":"logout","revoked_at":1767222000,"revoked_by":"idp","event_id":"e1"}`, nil},
		{"cutoff", `{"type":"cutoff","claim":"sub","value":"user-42","not_before":1767222000,"iss":"https://idp.example.com","reason":"password_change"}`, nil},
		{"cutoff client_id", `{"type":"cutoff","claim":"client_id","value":"web","not_before":1}`, nil},
		{"unknown fields ignored", `{"type":"jti","jti":"a","exp":5,"future":{"x":[1,2]}}`, nil},
		{"unknown type", `{"type":"unrevoke","jti":"a","exp":5}`, ErrUnknownType},
		{"no type", `{"jti":"a","exp":5}`, ErrUnknownType},
		{"not json", `{"type":`, ErrMalformed},
		{"array", `[{"type":"jti"}]`, ErrMalformed},
		{"wrong field type", `{"type":"jti","jti":"a","exp":"tomorrow"}`, ErrMalformed},
		{"not utf8", "{\"type\":\"jti\",\"jti\":\"\xff\",\"exp\":5}", ErrNotUTF8},
		{"too large", `{"type":"jti","jti":"a","exp":5,"pad":"` + strings.Repeat("p", MaxPayload) + `"}`, ErrTooLarge},
		{"empty jti", `{"type":"jti","jti":"","exp":5}`, ErrInvalid},
		{"long jti", `{"type":"jti","jti":"` + long + `","exp":5}`, ErrInvalid},
		{"no exp", `{"type":"jti","jti":"a"}`, ErrInvalid},
		{"negative exp", `{"type":"jti","jti":"a","exp":-5}`, ErrInvalid},
		{"exp past 2106", `{"type":"jti","jti":"a","exp":99999999999}`, ErrInvalid},
		{"claim not allowed", `{"type":"cutoff","claim":"email","value":"a@b","not_before":1}`, ErrInvalid},
		{"empty value", `{"type":"cutoff","claim":"sub","value":"","not_before":1}`, ErrInvalid},
		{"no not_before", `{"type":"cutoff","claim":"sub","value":"a"}`, ErrInvalid},
		{"bad reason", `{"type":"jti","jti":"a","exp":5,"reason":"because"}`, ErrInvalid},
		{"cutoff scoped to a client", `{"type":"cutoff","claim":"sub","value":"u","not_before":1,"client_id":"web","source":"backchannel-logout"}`, nil},
		{"client_id too long", `{"type":"cutoff","claim":"sub","value":"u","not_before":1,"client_id":"` + long + `"}`, ErrInvalid},
		{"client_id on a jti", `{"type":"jti","jti":"a","exp":5,"client_id":"web"}`, ErrInvalid},
		{"source too long", `{"type":"jti","jti":"a","exp":5,"source":"` + long + `"}`, ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode([]byte(c.payload), nil)
			if c.want == nil && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
}

func TestDecodeAllowedClaims(t *testing.T) {
	p := []byte(`{"type":"cutoff","claim":"email","value":"a@b","not_before":1}`)
	if _, err := Decode(p, []string{"sub", "email"}); err != nil {
		t.Fatalf("operator-allowed claim refused: %v", err)
	}
}

// --cutoff-claim tenant adds tenant to sub, sid, client_id: it never takes them away
// (issue 9 row 6: every password-change cutoff on sub was rejected).
func TestExtraCutoffClaimsAddToTheBuiltIns(t *testing.T) {
	extra := []string{"tenant"}
	for _, claim := range []string{"sub", "sid", "client_id", "tenant"} {
		p := []byte(`{"type":"cutoff","claim":"` + claim + `","value":"v","not_before":1}`)
		if _, err := Decode(p, extra); err != nil {
			t.Errorf("cutoff on %s with --cutoff-claim tenant: %v", claim, err)
		}
		ev := Event{Type: TypeCutoff, Claim: claim, Value: "v", NotBefore: 1}
		if err := ev.Validate(extra); err != nil {
			t.Errorf("Validate: cutoff on %s with --cutoff-claim tenant: %v", claim, err)
		}
		if !CutoffClaimAllowed(claim, extra) {
			t.Errorf("CutoffClaimAllowed(%s, tenant) = false", claim)
		}
	}
	for _, list := range [][]string{nil, {}, extra} {
		if _, err := Decode([]byte(`{"type":"cutoff","claim":"email","value":"a@b","not_before":1}`), list); !errors.Is(err, ErrInvalid) {
			t.Errorf("claim email with extra claims %q: %v, want ErrInvalid", list, err)
		}
	}
}

func TestReasonLabels(t *testing.T) {
	for err, want := range map[error]string{
		&Error{Kind: ErrTooLarge}:    "too_large",
		&Error{Kind: ErrMalformed}:   "malformed",
		&Error{Kind: ErrNotUTF8}:     "malformed",
		&Error{Kind: ErrUnknownType}: "unknown_type",
		&Error{Kind: ErrInvalid}:     "invalid",
		errors.New("x"):              "other",
	} {
		if got := Reason(err); got != want {
			t.Errorf("Reason(%v) = %q, want %q", err, got, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"jti","jti":"7f3c","exp":1767225600,"iss":"https://idp.example.com"}`,
		`{"type":"cutoff","claim":"sub","value":"user-42","not_before":1767222000}`,
		`{"type":"cutoff","claim":"client_id","value":"w","not_before":1,"reason":"other"}`,
		`{"type":"x"}`, `[]`, `null`, `{"type":"jti","exp":1e400}`, "\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		ev, err := Decode(payload, nil)
		if err != nil {
			if Reason(err) == "other" {
				t.Fatalf("error without a reason label: %v", err)
			}
			return
		}
		// Whatever decodes must satisfy the contract's rules.
		if ev.Type != TypeJTI && ev.Type != TypeCutoff {
			t.Fatalf("accepted type %q", ev.Type)
		}
		if len(payload) > MaxPayload {
			t.Fatal("accepted an oversized payload")
		}
		if ev.Type == TypeJTI && (ev.JTI == "" || len(ev.JTI) > MaxValueLen || ev.Exp <= 0) {
			t.Fatalf("accepted invalid jti event %+v", ev)
		}
		if ev.Type == TypeCutoff && (ev.Value == "" || len(ev.Value) > MaxValueLen || ev.NotBefore <= 0) {
			t.Fatalf("accepted invalid cutoff event %+v", ev)
		}
	})
}

func TestClaimText(t *testing.T) {
	for raw, want := range map[string]string{
		`"acme"`: "acme", `42`: "42", `4.2e1`: "4.2e1", `true`: "true", `null`: "", `[1]`: "", `{"a":1}`: "", ``: "", `"\u0041"`: "A",
	} {
		if got := ClaimText([]byte(raw)); got != want {
			t.Errorf("ClaimText(%s) = %q, want %q", raw, got, want)
		}
	}
}
