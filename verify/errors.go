package verify

import (
	"errors"
	"fmt"
)

// Reason classifies a refusal. The same classes name the expected outcomes
// of the shared vectors (testdata/assertions/manifest.json), so that the Go
// and Python verifiers are held to refusing each bad assertion for the same
// reason.
type Reason string

const (
	// ReasonMissing: no assertion header (or an empty one).
	ReasonMissing Reason = "missing"
	// ReasonMalformed: not a compact JWS, bad base64 or JSON, too long, two
	// headers, or header parameters that change how the token is read.
	ReasonMalformed Reason = "malformed"
	// ReasonAlgorithm: an algorithm other than ES256 and EdDSA ("none",
	// HS256, RS256, ...), or one that does not fit the key named by kid.
	ReasonAlgorithm Reason = "algorithm"
	// ReasonUnknownKey: no kid, or a kid the key set does not hold.
	ReasonUnknownKey Reason = "unknown_key"
	// ReasonSignature: the signature does not verify.
	ReasonSignature Reason = "signature"
	// ReasonIssuer and ReasonAudience: iss or aud is not the expected one.
	ReasonIssuer   Reason = "issuer"
	ReasonAudience Reason = "audience"
	// ReasonTokenIssuer: Config.TokenIssuer is set and the assertion's
	// token_iss (the realm of its subject) is another one, or missing.
	ReasonTokenIssuer Reason = "token_issuer"
	// ReasonExpired: now is past exp plus the leeway.
	ReasonExpired Reason = "expired"
	// ReasonNotYetValid: iat (or nbf) is after now plus the leeway.
	ReasonNotYetValid Reason = "not_yet_valid"
	// ReasonClaims: a required claim is missing or a claim has the wrong type.
	ReasonClaims Reason = "claims"
	// ReasonKeysUnavailable: the key set could not be fetched; the gateway's
	// fault, not the client's.
	ReasonKeysUnavailable Reason = "keys_unavailable"
)

// Error is a refusal with its class.
type Error struct {
	Reason Reason
	Err    error
}

func (e *Error) Error() string { return fmt.Sprintf("assertion %s: %v", e.Reason, e.Err) }

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the class of an error from Verify, "" for another error.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func refuse(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Err: fmt.Errorf(format, args...)}
}
