package jwtkeys

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// FuzzJWKSFile feeds any bytes to the JWKS file reader: nothing panics, and a key it
// keeps is one meant to verify signatures (use sig or none, key_ops with verify or none).
func FuzzJWKSFile(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","use":"enc"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","key_ops":["encrypt"]}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`[`))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, raw []byte) {
		path := filepath.Join(dir, "jwks.json")
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		keys, err := readJWKS(path)
		if err != nil {
			return
		}
		kept := (&keyStore{log: slog.New(slog.DiscardHandler)}).verifying(keys)
		if len(kept) == 0 {
			t.Fatal("a file without a signing key was accepted")
		}
		for _, k := range kept {
			if m := k.Marshal(); m.USE != "" && m.USE != "sig" {
				t.Fatalf("kept a key with use %q", m.USE)
			}
		}
	})
}
