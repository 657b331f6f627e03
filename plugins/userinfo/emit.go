package userinfo

// SignedRealm says what a good config signs, for `go-runner check`: the
// assertion's iss and aud, and the realm its subjects come from (the token
// issuer the route verifies, which becomes token_iss; "" when verify_token
// is false). ok is false when the route signs no assertion.
func (c *Conf) SignedRealm() (iss, aud, tokenIssuer string, ok bool) {
	if c == nil || c.err != nil || c.Assertion == nil {
		return "", "", "", false
	}
	if c.VerifyToken != nil && *c.VerifyToken {
		tokenIssuer = c.Issuer
	}
	return c.Assertion.Issuer, c.Assertion.Audience, tokenIssuer, true
}
