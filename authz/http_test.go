package authz

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestHTTPMode(t *testing.T) {
	e := newTestEnv(t)
	srv := httptest.NewServer(NewHTTPServer(e.a, "x-revoked-sub"))
	t.Cleanup(srv.Close)
	tok := e.ed.Token("alice", time.Hour, nil)
	revoked := e.ed.Token("mallory", time.Hour, nil)
	e.set.AddCutoff(e.set.CutoffKey("", "sub", "mallory"), time.Now().Add(time.Second).Unix())

	do := func(method, path string, auth ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		for _, a := range auth {
			req.Header.Add("Authorization", a)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	// Envoy forwards the original method and path (with path_prefix); any of them works.
	for _, m := range []string{"GET", "POST", "DELETE"} {
		resp := do(m, "/authz/api/v1/items?x=1", "Bearer "+tok)
		if resp.StatusCode != 200 || resp.Header.Get("X-Revoked-Sub") != "alice" {
			t.Fatalf("%s valid token: %d %v", m, resp.StatusCode, resp.Header)
		}
	}
	cases := []struct {
		name   string
		auth   []string
		status int
		www    string
		desc   string
	}{
		{"no token", nil, 401, `Bearer realm="revoked"`, "bearer token required"},
		{"revoked", []string{"Bearer " + revoked}, 401, `Bearer error="invalid_token", error_description="token revoked"`, "token revoked"},
		{"two headers", []string{"Bearer " + tok, "Bearer " + tok}, 401, `Bearer error="invalid_token", error_description="malformed token"`, "malformed token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := do("GET", "/", c.auth...)
			if resp.StatusCode != c.status || resp.Header.Get("Www-Authenticate") != c.www {
				t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("Www-Authenticate"))
			}
			if resp.Header.Get("X-Revoked-Sub") != "" {
				t.Fatal("denial carries the subject header")
			}
			raw, _ := io.ReadAll(resp.Body)
			var body map[string]string
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("body %q: %v", raw, err)
			}
			if body["error_description"] != c.desc {
				t.Fatalf("error_description %q, want %q", body["error_description"], c.desc)
			}
		})
	}
	e.a.SetGate(ReasonNotReady)
	if resp := do("GET", "/", "Bearer "+tok); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("not ready: %d", resp.StatusCode)
	}
}

func FuzzHTTPRequest(f *testing.F) {
	e := newTestEnv(f)
	h := NewHTTPServer(e.a, "x-revoked-sub")
	valid := e.ed.Token("alice", time.Hour, nil)
	f.Add("GET", "/", "Bearer "+valid, "")
	f.Add("POST", "/a/b?c=d", "bearer "+valid, "Bearer "+valid)
	f.Add("PUT", "/", "Basic eA==", "")
	f.Add("GET", "/%zz", "Bearer a.b.c", "")
	f.Fuzz(func(t *testing.T, method, path, auth1, auth2 string) {
		req := httptest.NewRequest("GET", "/", nil)
		req.Method = method
		req.URL.Path = path
		if auth1 != "" {
			req.Header.Add("Authorization", auth1)
		}
		if auth2 != "" {
			req.Header.Add("Authorization", auth2)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 200:
			tok, _ := BearerToken(auth1)
			if auth2 != "" || tok != valid {
				t.Fatalf("allowed a request that does not carry exactly the valid token: %q %q", auth1, auth2)
			}
		case 401:
			if rec.Header().Get("Www-Authenticate") == "" {
				t.Fatal("401 without a challenge")
			}
		default:
			t.Fatalf("status %d", rec.Code)
		}
	})
}
