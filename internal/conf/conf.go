// Package conf holds the small pieces every plugin's ParseConf needs: a Duration
// written as "30s", a strict JSON decoder whose errors name the offending key,
// and secret references that keep secrets out of route JSON.
package conf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"time"
)

// Duration is a time.Duration written in JSON as a Go duration string ("30s",
// "10m"). Bare numbers are refused: APISIX's own plugins disagree on their unit
// (seconds in one place, milliseconds in another), so a number is ambiguous.
type Duration time.Duration

// UnmarshalJSON reads a quoted duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '"' {
		return fmt.Errorf("duration must be a string such as \"30s\", got %s", truncate(string(b), 32))
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: want a number with a unit such as \"30s\"", truncate(s, 32))
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// String gives the Go duration string, as written in config.
func (d Duration) String() string { return time.Duration(d).String() }

// Std converts to time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// DecodeStrict decodes one JSON object into v, refusing unknown keys, keys
// that differ from a known one only in case, keys given twice, trailing data
// and wrong types. encoding/json alone would match keys case-insensitively
// and let the last duplicate win, so {"verify_token":true,"Verify_Token":false}
// would turn verification off. Its errors name the key at fault so that an
// operator reading the log knows which part of the route config to fix. It
// returns the keys present, for defaults that must not override an explicit
// zero.
func DecodeStrict(data []byte, v any) (Keys, error) {
	keys := Keys{}
	// Every key problem of the config at once (go-runner check lists them all), in document order.
	var problems []error
	checkKeys(data, reflect.TypeOf(v), "", keys, &problems)
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if key, keyErr := locate(data, reflect.TypeOf(v), ""); key != "" {
			return nil, fmt.Errorf("key %q: %w", key, keyErr)
		}
		return nil, describe(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON object")
	}
	return keys, nil
}

// Keys is the set of keys present in a decoded config, as dotted paths
// ("assertion.ttl").
type Keys map[string]bool

// Has reports whether the config gave path, even as zero, false or "".
func (k Keys) Has(path string) bool { return k[path] }

// checkKeys walks data along type t: every object key of a struct must be
// one of its json names exactly, and no object may hold a key twice. Each
// problem found is added to problems.
func checkKeys(data []byte, t reflect.Type, prefix string, present Keys, problems *[]error) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	data = bytes.TrimSpace(data)
	if t == nil || len(data) == 0 {
		return
	}
	switch {
	case data[0] == '{' && (t.Kind() == reflect.Struct || t.Kind() == reflect.Map):
		pairs, err := objectPairs(data)
		if err != nil {
			return // not valid JSON: the decoder says so with its position
		}
		seen := make(map[string]bool, len(pairs))
		for _, p := range pairs {
			path := prefix + p.key
			if seen[p.key] {
				*problems = append(*problems, fmt.Errorf("key %q is given twice", path))
				continue
			}
			seen[p.key] = true
			var elem reflect.Type
			if t.Kind() == reflect.Map {
				elem = t.Elem()
			} else {
				f, ok := fieldByJSONName(t, p.key)
				if !ok {
					if known, fold := fieldFolding(t, p.key); fold {
						*problems = append(*problems, fmt.Errorf("unknown key %q (keys are case-sensitive: did you mean %q?)", path, prefix+known))
					} else {
						*problems = append(*problems, fmt.Errorf("unknown key %q", path))
					}
					continue
				}
				elem = f.Type
			}
			present[path] = true
			checkKeys(p.value, elem, path+".", present, problems)
		}
	case data[0] == '[' && t.Kind() == reflect.Slice:
		var items []json.RawMessage
		if json.Unmarshal(data, &items) != nil {
			return
		}
		for i, item := range items {
			checkKeys(item, t.Elem(), fmt.Sprintf("%s%d.", prefix, i), present, problems)
		}
	}
}

type pair struct {
	key   string
	value json.RawMessage
}

// objectPairs lists an object's members in order, duplicates included
// (decoding into a map would keep only the last).
func objectPairs(data []byte) ([]pair, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not an object")
	}
	var out []pair
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("object key is not a string")
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, err
		}
		out = append(out, pair{key: key, value: value})
	}
	return out, nil
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}

func fieldByJSONName(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		if f := t.Field(i); jsonName(f) == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func fieldFolding(t reflect.Type, key string) (string, bool) {
	for i := 0; i < t.NumField(); i++ {
		if name := jsonName(t.Field(i)); name != "" && strings.EqualFold(name, key) {
			return name, true
		}
	}
	return "", false
}

// locate finds the key whose own UnmarshalJSON failed (a Duration, say): the
// json package reports those errors without the key, so decode key by key.
func locate(data []byte, t reflect.Type, prefix string) (string, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return "", nil
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(data, &fields) != nil {
		return "", nil
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		for key, raw := range fields {
			if key != name {
				continue
			}
			if k, err := locate(raw, f.Type, prefix+key+"."); k != "" {
				return k, err
			}
			if err := json.Unmarshal(raw, reflect.New(f.Type).Interface()); err != nil {
				var typeErr *json.UnmarshalTypeError
				if errors.As(err, &typeErr) {
					return prefix + key, fmt.Errorf("expected %s, got %s", typeName(typeErr.Type.String()), typeErr.Value)
				}
				return prefix + key, err
			}
		}
	}
	return "", nil
}

func describe(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		key := typeErr.Field
		if key == "" {
			return fmt.Errorf("config must be a JSON object, got %s", typeErr.Value)
		}
		return fmt.Errorf("key %q: expected %s, got %s", key, typeName(typeErr.Type.String()), typeErr.Value)
	case errors.As(err, &syntaxErr):
		return fmt.Errorf("invalid JSON at byte %d: %v", syntaxErr.Offset, err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("unknown key %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	case errors.Is(err, io.EOF):
		return errors.New("empty config: expected a JSON object")
	}
	// Errors from a field's own UnmarshalJSON (Duration) do not carry the key;
	// json wraps nothing for them, so say what we know.
	return err
}

func typeName(goType string) string {
	switch {
	case goType == "conf.Duration":
		return "a duration string such as \"30s\""
	case strings.HasPrefix(goType, "map["):
		return "an object"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "*"):
		return typeName(goType[1:])
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "a number"
	case strings.Contains(goType, "."):
		return "an object"
	}
	return "a " + goType
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Secret resolves a secret from the process environment by variable name. Route
// JSON names the variable, never the value: the runner logs the raw conf when
// parsing fails, and APISIX stores route configs in etcd or YAML in the clear.
//
// Because a route config chooses the name, it could name any variable of the
// process, including ones whose values are public (APISIX_CONF_EXPIRE_TIME)
// or belong to something else (KEYCLOAK_CLIENT_SECRET). So the name must end
// in "_SECRET" and not be one the runner uses for its own purposes, and the
// value must be long and varied enough to be a real key.
func Secret(envName string) (string, error) {
	if envName == "" {
		return "", errors.New("no environment variable named")
	}
	if err := checkSecretName(envName); err != nil {
		return "", err
	}
	v, ok := os.LookupEnv(envName)
	if !ok || v == "" {
		return "", fmt.Errorf("environment variable %s is not set (is it listed in nginx_config.envs?)", envName)
	}
	if err := checkSecretStrength(v); err != nil {
		return "", fmt.Errorf("environment variable %s: %w", envName, err)
	}
	return v, nil
}

// MinSecretLength is the shortest secret Secret accepts: 32 characters, as
// `openssl rand -hex 16` gives.
const MinSecretLength = 32

// reservedSecretNames are variables that hold the runner's own credentials:
// a route must not reuse them as its webhook key.
var reservedSecretNames = map[string]bool{"KEYCLOAK_CLIENT_SECRET": true}

func checkSecretName(name string) error {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("%q: a secret variable name holds only A-Z, 0-9 and _", name)
		}
	}
	if !strings.HasSuffix(name, "_SECRET") || len(name) == len("_SECRET") {
		return fmt.Errorf("%q: a secret variable name must end in _SECRET (a dedicated variable, such as ORGSYNC_WEBHOOK_SECRET)", name)
	}
	if reservedSecretNames[name] || strings.HasPrefix(name, "APISIX_") {
		return fmt.Errorf("%q holds another credential of the runner or APISIX; give this route its own variable", name)
	}
	return nil
}

// checkSecretStrength refuses secrets too short or too uniform to resist a
// guess; it cannot tell a good secret, only refuse obvious bad ones.
func checkSecretStrength(v string) error {
	if len(v) < MinSecretLength {
		return fmt.Errorf("secret is %d characters, want at least %d (e.g. openssl rand -hex 32)", len(v), MinSecretLength)
	}
	distinct := map[rune]bool{}
	for _, r := range v {
		distinct[r] = true
	}
	if len(distinct) < 10 {
		return fmt.Errorf("secret uses only %d distinct characters, want a random value (e.g. openssl rand -hex 32)", len(distinct))
	}
	return nil
}

// Lifecycle is what a route config does once decoded, in Caddy's order:
// fill in defaults for the keys not given, validate (nothing changed), then
// derive the state the request path uses. The runner has no such hooks, so
// ParseConf runs them all.
type Lifecycle interface {
	// SetDefaults fills in what set does not hold; a key given as zero is
	// left for Validate to accept or refuse, never silently replaced.
	SetDefaults(set Keys)
	Validate() error
	Derive() error
}

// Parse decodes in strictly into c and runs c's lifecycle. Errors carry the
// component prefix ("orgsync: ...") and name the key at fault.
func Parse(component string, in []byte, c Lifecycle) error {
	keys, err := DecodeStrict(in, c)
	if err != nil {
		return prefixEach(component, err)
	}
	c.SetDefaults(keys)
	// Validate may join several problems; each keeps its own prefix.
	if err := c.Validate(); err != nil {
		return prefixEach(component, err)
	}
	if err := c.Derive(); err != nil {
		return prefixEach(component, err)
	}
	return nil
}

// prefixEach names component in front of err, or in front of each error err
// joins, so that each stays a problem of its own (errors.Join's Unwrap).
func prefixEach(component string, err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var each []error
		for _, e := range j.Unwrap() {
			each = append(each, fmt.Errorf("%s: %w", component, e))
		}
		return errors.Join(each...)
	}
	return fmt.Errorf("%s: %w", component, err)
}

// HeaderName checks a header name given under key: letters, digits, '-' and
// '_' only (what nginx passes with underscores_in_headers on), not empty.
func HeaderName(key, name string) error {
	if name == "" {
		return fmt.Errorf("%q: header name is empty", key)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%q: header name %q may hold only letters, digits, '-' and '_'", key, name)
		}
	}
	return nil
}
