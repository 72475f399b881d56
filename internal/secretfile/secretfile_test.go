package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	tests := map[string]struct {
		content, want, err string
	}{
		"trimmed":        {"  a-secret-of-20-chars\n", "a-secret-of-20-chars", ""},
		"exactly 16":     {"0123456789abcdef", "0123456789abcdef", ""},
		"short":          {"0123456789abcde\n", "", "at least 16"},
		"only spaces":    {strings.Repeat(" ", 32), "", "at least 16"},
		"inner space ok": {"a secret with spaces", "a secret with spaces", ""},
	}
	for name, tc := range tests {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := Read(p)
		if got != tc.want || (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %q, %v; want %q, %q", name, got, err, tc.want, tc.err)
		}
	}
	if _, err := Read(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file read")
	}
}
