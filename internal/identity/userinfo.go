package identity

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
)

// Claim names this project reads.
const (
	ClaimSubject           = "sub"
	ClaimEmail             = "email"
	ClaimName              = "name"
	ClaimPreferredUsername = "preferred_username"
	ClaimOrganization      = "organization"
	ClaimGroups            = "groups"
	ClaimRoles             = "roles"
	// ClaimResourceAccess is Keycloak's client roles claim:
	// {"<client id>":{"roles":["..."]}}.
	ClaimResourceAccess = "resource_access"
)

// DefaultMaxUserinfoBytes bounds the encoded X-Userinfo header we decode. Real
// userinfo is a few hundred bytes; a user in hundreds of organizations with
// attributes stays well under this.
const DefaultMaxUserinfoBytes = 32 << 10

// ErrMalformed marks X-Userinfo that is not what openid-connect produces.
var ErrMalformed = errors.New("malformed X-Userinfo")

// Claims is a decoded claim set. Values stay raw JSON so that claims this
// project does not use pass through byte for byte.
type Claims map[string]json.RawMessage

// DecodeUserinfo decodes an X-Userinfo header value: standard base64 (padded,
// as openid-connect writes it; unpadded is tolerated) of a JSON object. It
// checks the types of the claims this project reads.
func DecodeUserinfo(value string, maxBytes int) (Claims, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxUserinfoBytes
	}
	if len(value) > maxBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(value), maxBytes)
	}
	raw, err := base64.StdEncoding.DecodeString(value)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(value)
		if err != nil {
			return nil, fmt.Errorf("%w: not base64", ErrMalformed)
		}
	}
	return ParseClaims(raw)
}

// ParseClaims parses a JSON object of claims and checks the types of the
// claims this project reads.
func ParseClaims(raw []byte) (Claims, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	var c Claims
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: invalid JSON", ErrMalformed)
	}
	if c == nil {
		c = Claims{}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks the types of the claims this project reads.
func (c Claims) Validate() error {
	if _, ok := c[ClaimSubject]; ok {
		sub, err := c.String(ClaimSubject)
		if err != nil {
			return err
		}
		if sub == "" {
			return fmt.Errorf("%w: claim %q is empty", ErrMalformed, ClaimSubject)
		}
	}
	for _, name := range []string{ClaimEmail, ClaimName, ClaimPreferredUsername} {
		if _, err := c.String(name); err != nil {
			return err
		}
	}
	if _, err := c.Organizations(); err != nil {
		return err
	}
	return nil
}

// String returns a string claim; "" when absent or null.
func (c Claims) String(name string) (string, error) {
	raw, ok := c[name]
	if !ok || isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%w: claim %q must be a string", ErrMalformed, name)
	}
	return s, nil
}

// Subject returns the sub claim ("" when absent).
func (c Claims) Subject() string {
	s, _ := c.String(ClaimSubject)
	return s
}

// Organizations parses the organization claim in any of Keycloak's shapes.
func (c Claims) Organizations() (Organizations, error) {
	raw, ok := c[ClaimOrganization]
	if !ok {
		return Organizations{Shape: ShapeAbsent}, nil
	}
	orgs, err := ParseOrganizations(raw)
	if err != nil {
		return Organizations{}, fmt.Errorf("%w: claim %q: %v", ErrMalformed, ClaimOrganization, err)
	}
	return orgs, nil
}

// Clone returns a copy that can be changed without touching c.
func (c Claims) Clone() Claims {
	out := make(Claims, len(c))
	for k, v := range c {
		out[k] = v
	}
	return out
}

// Merge overwrites every claim of c that override also has. Used with a
// verified token as override: the token is signed and fresher, so a client
// holding its own valid token cannot write someone else's email into X-Userinfo.
// It reports whether any value changed.
func (c Claims) Merge(override Claims) bool {
	changed := false
	for k, old := range c {
		if v, ok := override[k]; ok && !bytes.Equal(old, v) {
			c[k] = v
			changed = true
		}
	}
	return changed
}

// Encode gives the X-Userinfo header value: standard base64 of the JSON object.
func (c Claims) Encode() (string, error) {
	b, err := c.MarshalJSON()
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// MarshalJSON writes the claims with sorted keys, so equal claims encode equal.
func (c Claims) MarshalJSON() ([]byte, error) {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		v := c[k]
		if len(v) == 0 {
			v = json.RawMessage("null")
		}
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}
