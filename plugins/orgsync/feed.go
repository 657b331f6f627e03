package orgsync

import (
	"encoding/json"
	"fmt"
)

// FeedSigner signs change feed entries: *assertion.KeyRing, so that apps verify the feed with the
// key set they already trust for the assertion (its JWKS route).
type FeedSigner interface {
	SignFeed(payload []byte) (string, error)
}

// Feed entry field names that FeedFields does not write.
const (
	// FeedSigField holds the entry's signature: a compact JWS (typ "orgsync-change+jws", the
	// assertion key's alg and kid) whose payload is the JSON object of every other field of the
	// entry plus FeedStreamClaim.
	FeedSigField = "sig"
	// FeedStreamClaim names, in the signed payload, the full Redis key of the stream the entry
	// was written to: an entry copied into another stream (another fleet's prefix) fails there.
	FeedStreamClaim = "stream"
)

// SignFeedFields adds to fields (an entry of FeedFields) its signature, bound to streamKey (the
// stream's full Redis key, Cache.FeedKey). A reader accepts an entry only when the signed payload
// holds exactly the entry's other fields and its own stream's key, and when the entry's time lies
// near the stream id's (verify/feed.go, clients/python feed.py), so that a Redis writer can neither
// forge an entry nor add an old genuine one back later.
func SignFeedFields(s FeedSigner, streamKey string, fields map[string]string) error {
	payload := make(map[string]string, len(fields)+1)
	for k, v := range fields {
		if k == FeedSigField || k == FeedStreamClaim {
			return fmt.Errorf("orgsync: feed field %q is reserved", k)
		}
		payload[k] = v
	}
	payload[FeedStreamClaim] = streamKey
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("orgsync: feed entry: %w", err)
	}
	sig, err := s.SignFeed(b)
	if err != nil {
		return err
	}
	fields[FeedSigField] = sig
	return nil
}
