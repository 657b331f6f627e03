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

// DecodeStrict decodes one JSON object into v, refusing unknown keys, trailing
// data and wrong types. Its errors name the key at fault so that an operator
// reading the log knows which part of the route config to fix.
func DecodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if key, keyErr := locate(data, reflect.TypeOf(v), ""); key != "" {
			return fmt.Errorf("key %q: %w", key, keyErr)
		}
		return describe(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
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
		// encoding/json also fills a field from a key that differs only in
		// case ("Fresh_TTL"), so look at those keys too.
		for key, raw := range fields {
			if key != name && !strings.EqualFold(key, name) {
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
func Secret(envName string) (string, error) {
	if envName == "" {
		return "", errors.New("no environment variable named")
	}
	v, ok := os.LookupEnv(envName)
	if !ok || v == "" {
		return "", fmt.Errorf("environment variable %s is not set (is it listed in nginx_config.envs?)", envName)
	}
	return v, nil
}

// Lifecycle is what a route config does once decoded, in Caddy's order:
// fill in defaults, validate (nothing changed), then derive the state the
// request path uses. The runner has no such hooks, so ParseConf runs them all.
type Lifecycle interface {
	SetDefaults()
	Validate() error
	Derive() error
}

// Parse decodes in strictly into c and runs c's lifecycle. Errors carry the
// component prefix ("orgsync: ...") and name the key at fault.
func Parse(component string, in []byte, c Lifecycle) error {
	if err := DecodeStrict(in, c); err != nil {
		return fmt.Errorf("%s: %w", component, err)
	}
	c.SetDefaults()
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%s: %w", component, err)
	}
	if err := c.Derive(); err != nil {
		return fmt.Errorf("%s: %w", component, err)
	}
	return nil
}
