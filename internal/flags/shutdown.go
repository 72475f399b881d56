package flags

import (
	"errors"
	"flag"
	"time"
)

// Shutdown is what a subcommand does on SIGTERM. For Delay it keeps serving while it
// reports not ready (/readyz 503, gRPC health NOT_SERVING), so that Envoy, which keeps
// sending checks while it drains, and the load balancers in front of the ingest API
// have stopped using it before it stops answering; then it stops accepting and gives
// the requests in flight up to Timeout.
type Shutdown struct {
	Delay   time.Duration // --shutdown-delay: serving while not ready, after SIGTERM
	Timeout time.Duration // --shutdown-timeout: then, time given to requests in flight
}

// DefaultShutdownTimeout is how long requests in flight may take once the listeners
// stop accepting.
const DefaultShutdownTimeout = 10 * time.Second

// RegisterFlags adds --shutdown-delay and --shutdown-timeout to fs.
func (s *Shutdown) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&s.Delay, "shutdown-delay", 0, "on SIGTERM, keep serving this long while /readyz and gRPC health say not ready, then stop accepting; set it to Envoy's drain time (or the pod's preStop sleep) so that no request meets a closed port")
	fs.DurationVar(&s.Timeout, "shutdown-timeout", DefaultShutdownTimeout, "on SIGTERM, after --shutdown-delay, time given to requests in flight")
}

// Validate checks that both durations make sense.
func (s *Shutdown) Validate() error {
	var errs []error
	if s.Delay < 0 {
		errs = append(errs, errors.New("--shutdown-delay must not be negative"))
	}
	if s.Timeout <= 0 {
		errs = append(errs, errors.New("--shutdown-timeout must be positive"))
	}
	return errors.Join(errs...)
}
