package jwtkeys

import (
	"context"
	"errors"

	"github.com/MicahParks/jwkset"
)

// Refresh reads the keys again now, from the URL or the file, waiting for it (within
// ctx). It is not rate-limited: it is for a caller that authenticated the sender by
// other means and limits its own calls (an SSF transmitter, authenticated by its push
// authorization or polled, whose SET names a kid not held yet after a key rotation).
// Keyfunc's own refresh on an unknown kid is limited to one per 10 s for the anonymous
// callers of the sidecar; a second rotation within that, or keys published a moment
// after the first SET they sign, would otherwise refuse a revocation.
func (k *Keys) Refresh(ctx context.Context) error {
	if k.refresh == nil {
		return errors.New("no JWKS to refresh")
	}
	return k.refresh(ctx)
}

// fetchOnce fetches the JWKS URL into opts.Storage once, parsed as the periodic
// refresh parses it: a storage without a refresh interval fetches once, in its
// constructor.
func fetchOnce(ctx context.Context, url string, opts jwkset.HTTPClientStorageOptions) error {
	opts.Ctx, opts.RefreshInterval, opts.NoErrorReturnFirstHTTPReq, opts.RefreshErrorHandler = ctx, 0, false, nil
	_, err := jwkset.NewStorageFromHTTP(url, opts)
	return err
}

// reloadFile reads the JWKS file into store; a broken file keeps the keys held.
func reloadFile(ctx context.Context, store *keyStore, path string) error {
	keys, err := readJWKS(path)
	if err != nil {
		return err
	}
	return store.KeyReplaceAll(ctx, keys)
}
