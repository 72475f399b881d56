// Package flagenv gives every flag of a FlagSet an environment variable: PREFIX_ and the
// flag name in upper snake case (--nats-url is REVOKED_NATS_URL). A flag set on the
// command line wins over the environment.
package flagenv

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// Name returns the environment variable for flag name under prefix.
func Name(prefix, flagName string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Apply sets, from the environment, every flag of fs that the command line did not set,
// except the flags named in skip (a --version that only the command line may ask for).
// Call it after fs.Parse.
func Apply(fs *flag.FlagSet, prefix string, skip ...string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, name := range skip {
		set[name] = true
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := Name(prefix, f.Name)
		v, ok := os.LookupEnv(env)
		if !ok {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("%s=%q: %w", env, v, e)
		}
	})
	return err
}

// Strings is a repeatable string flag; from the environment it takes a comma-separated list.
type Strings []string

// String implements flag.Value.
func (s *Strings) String() string { return strings.Join(*s, ",") }

// Set implements flag.Value: each call appends; commas separate several values.
func (s *Strings) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}
