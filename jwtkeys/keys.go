// Package jwtkeys finds the keys that verify JWTs: an issuer's JWKS from a file
// (reloaded when it changes) or a URL (refreshed, and fetched again on an unknown kid),
// or a shared HMAC secret, behind the fixed list of accepted algorithms. The sidecar's
// verifier and every ingest receiver parse tokens through it, so that the algorithm
// list, the key-set generation and the refusal of keys a token names itself are
// written once.
package jwtkeys

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/revoked-dev/revoked/internal/filewatch"
)

// AsymmetricMethods are the algorithms accepted with JWKS keys. The list is fixed: a
// token's own alg header never widens it, and "none" is never in it (RFC 8725).
var AsymmetricMethods = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// HMACMethods are accepted only when a shared secret is configured.
var HMACMethods = []string{"HS256", "HS384", "HS512"}

// Config says where signing keys come from. Set File or URL (or only HMACSecret).
type Config struct {
	File       string        // a JWKS file, polled for changes
	URL        string        // a JWKS URL
	Refresh    time.Duration // how often the URL (or file) is read again; default 1h (file: 10s)
	HMACSecret []byte        // enables HS256/384/512
	HTTPClient *http.Client  // for URL; default has a 10 s timeout
}

// Keys finds the key that verifies a token: from the issuer's JWKS by kid, kept fresh by
// keyfunc/jwkset (periodic refresh, and a rate-limited refresh on an unknown kid), or
// the HMAC secret. It never uses a key named by the token itself (jwk, jku, x5u, x5c).
type Keys struct {
	jwks    keyfunc.Keyfunc
	storage jwkset.Storage
	hmac    []byte
	methods []string
	loaded  atomic.Bool
	gen     atomic.Uint64 // see Generation
	refresh func(context.Context) error
}

// Generation counts the changes of the key set that can undo a verification: a key
// removed (it leaked), or its material or use changed. A verification is trusted only
// under the generation it was made in; the token cache checks it on every hit. Adding
// a key changes nothing: it cannot make a verified signature false.
func (k *Keys) Generation() uint64 { return k.gen.Load() }

// Errors the key lookup returns; Verify turns them into denial reasons.
var (
	ErrBadAlgorithm = errors.New("algorithm not accepted")
	ErrUnknownKey   = errors.New("no key for kid")
	ErrCritHeader   = errors.New("unsupported crit header")
)

// New loads the keys. With a URL that cannot be reached yet it still returns; Loaded
// stays false (and the sidecar unready) until a fetch succeeds.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Keys, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &Keys{hmac: cfg.HMACSecret}
	if cfg.File != "" || cfg.URL != "" {
		k.methods = slices.Clone(AsymmetricMethods)
	}
	if len(cfg.HMACSecret) > 0 {
		if len(cfg.HMACSecret) < 32 {
			return nil, errors.New("HMAC secret must be at least 32 bytes")
		}
		k.methods = append(k.methods, HMACMethods...)
	}
	store := &keyStore{MemoryJWKSet: jwkset.NewMemoryStorage(), gen: &k.gen, log: log}
	switch {
	case cfg.File != "":
		var watch filewatch.Watcher // its state taken before the read: a change in between is seen
		watch.Add(func() { reloadFileLogged(ctx, store, cfg.File, log) }, cfg.File)
		keys, err := readJWKS(cfg.File)
		if err != nil {
			return nil, err
		}
		if err := store.KeyReplaceAll(ctx, keys); err != nil {
			return nil, fmt.Errorf("jwks file %s: %w", cfg.File, err)
		}
		k.storage = store
		k.loaded.Store(true)
		k.refresh = func(ctx context.Context) error { return reloadFile(ctx, store, cfg.File) }
		refresh := cfg.Refresh
		if refresh <= 0 || refresh > 10*time.Second {
			refresh = 10 * time.Second
		}
		go watch.Run(ctx, refresh)
	case cfg.URL != "":
		client := cfg.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: 10 * time.Second}
		}
		refresh := cfg.Refresh
		if refresh <= 0 {
			refresh = time.Hour
		}
		opts := jwkset.HTTPClientStorageOptions{
			Client:                    client,
			Ctx:                       ctx,
			HTTPTimeout:               10 * time.Second,
			NoErrorReturnFirstHTTPReq: true,
			RefreshInterval:           refresh,
			RefreshErrorHandler: func(_ context.Context, err error) {
				log.Warn("jwks refresh failed", "url", cfg.URL, "err", err)
			},
			Storage: store,
		}
		remote, err := jwkset.NewStorageFromHTTP(cfg.URL, opts)
		if err != nil {
			return nil, fmt.Errorf("jwks %s: %w", cfg.URL, err)
		}
		if !store.hasKeys(ctx) {
			go retryFirstFetch(ctx, cfg.URL, opts, store, log)
		}
		k.refresh = func(ctx context.Context) error { return fetchOnce(ctx, cfg.URL, opts) }
		st, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
			HTTPURLs: map[string]jwkset.Storage{cfg.URL: remote},
			// An unknown kid (key rotation) triggers at most one fetch per 10 s; a
			// request waits for it no longer than 2 s.
			RefreshUnknownKID: rate.NewLimiter(rate.Every(10*time.Second), 1),
			RateLimitWaitMax:  2 * time.Second,
		})
		if err != nil {
			return nil, fmt.Errorf("jwks %s: %w", cfg.URL, err)
		}
		k.storage = st
	case len(cfg.HMACSecret) == 0:
		return nil, errors.New("no signing keys: set a JWKS file or URL")
	}
	if k.storage != nil {
		kf, err := keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: k.storage})
		if err != nil {
			return nil, err
		}
		k.jwks = kf
	}
	return k, nil
}

// Methods are the accepted algorithms.
func (k *Keys) Methods() []string { return k.methods }

// NewParser returns a JWT parser that accepts only the algorithms of Methods, whatever
// the token says; opts add the caller's own checks. Parse with k.Keyfunc.
func (k *Keys) NewParser(opts ...jwt.ParserOption) *jwt.Parser {
	return jwt.NewParser(append([]jwt.ParserOption{jwt.WithValidMethods(k.methods)}, opts...)...)
}

// Loaded reports whether at least one key is known.
func (k *Keys) Loaded(ctx context.Context) bool {
	if k.loaded.Load() {
		return true
	}
	if k.storage == nil {
		k.loaded.Store(len(k.hmac) > 0)
		return k.loaded.Load()
	}
	all, err := k.storage.KeyReadAll(ctx)
	if err == nil && len(all) > 0 {
		k.loaded.Store(true)
	}
	return k.loaded.Load()
}

// Keyfunc is the jwt.Keyfunc: it returns the key that must have signed t.
func (k *Keys) Keyfunc(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		// RFC 7515 4.1.11: extensions listed in crit must be understood; we know none.
		return nil, ErrCritHeader
	}
	alg := t.Method.Alg()
	if !slices.Contains(k.methods, alg) {
		return nil, ErrBadAlgorithm
	}
	if slices.Contains(HMACMethods, alg) {
		return k.hmac, nil
	}
	key, err := k.jwks.Keyfunc(t)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnknownKey, err)
	}
	switch key := key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return key, nil
	case jwt.VerificationKeySet:
		// A token without kid: keyfunc offers every key of the set. Keep the public
		// keys only, so that no symmetric key of a JWKS can ever verify a token.
		var set jwt.VerificationKeySet
		for _, k := range key.Keys {
			if asymmetric(k) {
				set.Keys = append(set.Keys, k)
			}
		}
		if len(set.Keys) == 0 {
			return nil, ErrUnknownKey
		}
		return set, nil
	}
	return nil, fmt.Errorf("%w: key type %T cannot verify", ErrBadAlgorithm, key)
}

func asymmetric(k any) bool {
	switch k.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return true
	}
	return false
}

// The first JWKS fetch, when it fails at start, is retried after firstFetchRetry,
// doubling up to maxFirstFetchRetry, until a key is loaded.
var (
	firstFetchRetry    = 250 * time.Millisecond
	maxFirstFetchRetry = 30 * time.Second
)

// retryFirstFetch fetches the JWKS URL into store until it holds a key. The periodic
// refresh (--jwks-refresh, 1 h by default) is no retry: without this a pod that
// started during a short IdP outage stayed unready for an hour.
func retryFirstFetch(ctx context.Context, url string, opts jwkset.HTTPClientStorageOptions, store *keyStore, log *slog.Logger) {
	delay := firstFetchRetry
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if store.hasKeys(ctx) { // a refresh on an unknown kid got there first
			return
		}
		err := fetchOnce(ctx, url, opts) // into store, as opts.Storage
		if err == nil && store.hasKeys(ctx) {
			log.Info("jwks loaded", "url", url)
			return
		}
		if err == nil {
			err = errors.New("no signing keys")
		}
		delay = min(2*delay, maxFirstFetchRetry)
		log.Warn("jwks fetch failed; retrying", "url", url, "in", delay, "err", err)
		t.Reset(delay)
	}
}

// keyStore holds the JWKS keys, whatever writes them (file reload, URL refresh, the
// refresh on an unknown kid). It keeps only keys that may verify signatures (RFC 7517:
// use "sig" or none, key_ops with "verify" or none), and moves the generation when a
// key it held is gone or changed.
type keyStore struct {
	*jwkset.MemoryJWKSet
	gen     *atomic.Uint64
	log     *slog.Logger
	mu      sync.Mutex
	prints  map[[sha256.Size]byte]bool // fingerprints of the keys held
	ignored map[string]bool            // kids of keys not for signatures, logged once
}

func (s *keyStore) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.MemoryJWKSet.KeyReplaceAll(ctx, s.verifying(given)); err != nil {
		return err
	}
	s.changed(ctx)
	return nil
}

func (s *keyStore) KeyWrite(ctx context.Context, jwk jwkset.JWK) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, jwk := range s.verifying([]jwkset.JWK{jwk}) {
		if err := s.MemoryJWKSet.KeyWrite(ctx, jwk); err != nil {
			return err
		}
	}
	s.changed(ctx)
	return nil
}

func (s *keyStore) KeyDelete(ctx context.Context, kid string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok, err := s.MemoryJWKSet.KeyDelete(ctx, kid)
	s.changed(ctx)
	return ok, err
}

// changed moves the generation if a key held before is no longer held as it was. It
// runs after the keys are replaced: a verification that read the generation before
// the move is then never trusted after it.
func (s *keyStore) changed(ctx context.Context) {
	all, _ := s.MemoryJWKSet.KeyReadAll(ctx)
	prints := make(map[[sha256.Size]byte]bool, len(all))
	for _, jwk := range all {
		b, _ := json.Marshal(jwk.Marshal())
		prints[sha256.Sum256(b)] = true
	}
	for p := range s.prints {
		if !prints[p] {
			s.gen.Add(1)
			break
		}
	}
	s.prints = prints
}

func (s *keyStore) hasKeys(ctx context.Context) bool {
	all, err := s.MemoryJWKSet.KeyReadAll(ctx)
	return err == nil && len(all) > 0
}

// verifying drops the keys that may not verify signatures, logging each kid once
// (IdPs such as Keycloak publish an encryption key beside their signing keys).
func (s *keyStore) verifying(keys []jwkset.JWK) []jwkset.JWK {
	out := make([]jwkset.JWK, 0, len(keys))
	for _, jwk := range keys {
		if m := jwk.Marshal(); !verifies(m) {
			if !s.ignored[m.KID] && len(s.ignored) < 64 {
				if s.ignored == nil {
					s.ignored = make(map[string]bool)
				}
				s.ignored[m.KID] = true
				s.log.Info("jwks key not for signatures; ignored", "kid", m.KID, "use", m.USE, "key_ops", m.KEYOPS)
			}
			continue
		}
		out = append(out, jwk)
	}
	return out
}

func verifies(m jwkset.JWKMarshal) bool {
	return (m.USE == "" || m.USE == jwkset.UseSig) && (len(m.KEYOPS) == 0 || slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify))
}

func readJWKS(path string) ([]jwkset.JWK, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwks file: %w", err)
	}
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("jwks file %s: %w", path, err)
	}
	keys, err := set.JWKSlice()
	if err != nil {
		return nil, fmt.Errorf("jwks file %s: %w", path, err)
	}
	if !slices.ContainsFunc(keys, func(k jwkset.JWK) bool { return verifies(k.Marshal()) }) {
		return nil, fmt.Errorf("jwks file %s: no signing keys", path)
	}
	return keys, nil
}

// reloadFileLogged reloads the JWKS file once the watcher saw it change (a mounted
// ConfigMap is replaced atomically on key rotation). A broken file keeps the old keys.
func reloadFileLogged(ctx context.Context, st *keyStore, path string, log *slog.Logger) {
	if err := reloadFile(ctx, st, path); err != nil {
		log.Warn("jwks file reload failed; keeping the old keys", "err", err)
		return
	}
	log.Info("jwks file reloaded", "file", path)
}

// HasKID reports whether a key with kid is held now. It never fetches: a caller that
// must not wait on a key refresh (an endpoint any anonymous caller may reach) asks it
// before Keyfunc, which fetches the JWKS again on an unknown kid.
func (k *Keys) HasKID(ctx context.Context, kid string) bool {
	if k.storage == nil {
		return false
	}
	all, err := k.storage.KeyReadAll(ctx)
	return err == nil && slices.ContainsFunc(all, func(j jwkset.JWK) bool { return j.Marshal().KID == kid })
}
