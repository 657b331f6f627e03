package assertion

import (
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
)

// FeedType is the typ header of a change feed entry's signature. Verifiers require it, so that
// a feed signature is never taken for an assertion, nor an assertion for a feed entry.
const FeedType = "orgsync-change+jws"

// SignFeed returns a compact JWS of payload (a change feed entry) under the signing key, with
// typ FeedType: apps verify feed entries with the key set they already trust for assertions.
func (k *KeyRing) SignFeed(payload []byte) (string, error) {
	// A signer per entry: entries are rare (one per membership change), and the assertion's
	// signer stays as it is.
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.key, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType(FeedType))
	if err != nil {
		return "", fmt.Errorf("assertion: feed signer: %w", err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("assertion: signing a feed entry: %w", err)
	}
	return obj.CompactSerialize()
}
