// Package secretfile reads a secret from a file (a bearer token, a client secret, an
// SSF push authorization): the one rule for what such a file must hold, shared by the
// ingest API and the Shared Signals receiver.
package secretfile

import (
	"fmt"
	"os"
	"strings"
)

// MinLength is the shortest secret accepted: a shorter one is a mistake (a placeholder,
// a truncated write), not a secret.
const MinLength = 16

// Read returns the file's content without the surrounding white space (the newline an
// editor or `kubectl create secret --from-file` leaves); a secret shorter than
// MinLength is an error.
func Read(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if len(s) < MinLength {
		return "", fmt.Errorf("%s: the secret must be at least %d characters", path, MinLength)
	}
	return s, nil
}
